/*
 * Live SMS counter for message body fields (textarea[data-sms-counter]).
 *
 * Every count comes from the server (data-measure-url, campaigns.admin_views
 * .measure_view): Python is the one source of truth for encodings and
 * segments, this file only asks (debounced) and shows the answer.
 * Positions in the answer are Unicode code points, so the text is walked
 * with Array.from (code points), never with UTF-16 string indexes.
 */
(function () {
  "use strict";

  var DELAY_MS = 250;
  var INVISIBLE = /[\s\u00AD\u200B-\u200F\u2060\uFEFF]/;

  function fieldValue(id) {
    var el = document.getElementById(id);
    return el ? el.value : "";
  }

  function csrfToken(textarea) {
    var form = textarea.form || document;
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  function preview(text, positions) {
    // The text with every character that forces UCS-2 highlighted.
    var box = el("div", "sms-counter-preview");
    var chars = Array.from(text);
    var plain = "";
    chars.forEach(function (ch, i) {
      var info = positions[i];
      if (!info) {
        plain += ch;
        return;
      }
      if (plain) box.appendChild(document.createTextNode(plain));
      plain = "";
      var mark = el("mark", "sms-counter-bad", INVISIBLE.test(ch) ? "[" + info.code + "]" : ch);
      mark.title = info.code + " " + info.name;
      box.appendChild(mark);
    });
    if (plain) box.appendChild(document.createTextNode(plain));
    return box;
  }

  function render(box, textarea, data, text) {
    box.textContent = "";
    var summary = el("div", "sms-counter-summary");
    summary.appendChild(document.createTextNode(plural(data.characters, "character", "characters") + " · "));
    summary.appendChild(el("span", "sms-counter-encoding" + (data.encoding === "UCS-2" ? " sms-counter-ucs2" : ""), data.encoding));
    summary.appendChild(document.createTextNode(" · "));
    summary.appendChild(el("span", "sms-counter-segments", plural(data.segments, "SMS", "SMS")));
    summary.appendChild(
      document.createTextNode(
        " (" + data.units + " units, " + data.per_part + " per part; " + data.remaining + " left before the next SMS)"
      )
    );
    box.appendChild(summary);
    if (data.source === "template") {
      box.appendChild(el("div", "sms-counter-note", "The body is empty: this counts the chosen template's text."));
    }

    if (data.placeholders && data.placeholders.length) {
      box.appendChild(
        el("div", "sms-counter-note", "Counted as written: placeholders (" + data.placeholders.join(", ") +
          ") change the length per recipient; the quote counts each rendered message.")
      );
    }

    if (data.non_gsm && data.non_gsm.length) {
      var positions = {};
      data.non_gsm.forEach(function (item) { positions[item.position] = item; });
      var names = [];
      var seen = {};
      data.non_gsm.forEach(function (item) {
        if (!seen[item.char]) {
          seen[item.char] = true;
          names.push((INVISIBLE.test(item.char) ? "" : item.char + " ") + "(" + item.name + ")");
        }
      });
      box.appendChild(el("div", "sms-counter-why", "UCS-2 because of: " + names.join(", ")));
      box.appendChild(preview(text, positions));
    }

    var suggestion = data.suggestion;
    if (suggestion && suggestion.replacements.length) {
      var offer = el("div", "sms-counter-suggestion");
      var changes = suggestion.replacements.map(function (r) {
        return (INVISIBLE.test(r.char) ? "[" + r.name + "]" : r.char) + " → " + (r.replacement === "" ? "nothing" : (r.replacement === " " ? "[space]" : r.replacement));
      });
      var uniq = changes.filter(function (c, i) { return changes.indexOf(c) === i; });
      var outcome = suggestion.encoding_after + ", " + plural(suggestion.segments_after, "SMS", "SMS") +
        (suggestion.segments_saved > 0 ? " (saves " + plural(suggestion.segments_saved, "SMS", "SMS") + " per message)" : "");
      offer.appendChild(el("div", "", "GSM version: replace " + uniq.join(", ") + " → " + outcome + "."));
      var button = el("button", "button sms-counter-apply", "Use the GSM version");
      button.type = "button";
      button.addEventListener("click", function () {
        textarea.value = suggestion.text;
        textarea.dispatchEvent(new Event("input", { bubbles: true }));
      });
      offer.appendChild(button);
      box.appendChild(offer);
    }

    if (data.cost_text) {
      // The inbox reply box: the price on its account and the balance.
      box.appendChild(el("div", "sms-counter-cost" + (data.cost_short ? " sms-counter-short" : ""), data.cost_text));
    }

    var problems = (data.template_errors || []).concat(data.problems || []);
    if (problems.length) {
      var list = el("ul", "sms-counter-problems");
      problems.forEach(function (p) { list.appendChild(el("li", "sms-counter-problem", p)); });
      box.appendChild(list);
    }
  }

  function setup(textarea) {
    var url = textarea.getAttribute("data-measure-url");
    if (!url || textarea.dataset.smsCounterReady) return;
    textarea.dataset.smsCounterReady = "1";
    var box = el("div", "sms-counter");
    box.setAttribute("aria-live", "polite");
    var anchor = textarea.closest(".flex-container") || textarea;
    anchor.parentNode.insertBefore(box, anchor.nextSibling);

    var timer = null;
    var sequence = 0;

    function ask() {
      var mine = ++sequence;
      var text = textarea.value;
      var body = new URLSearchParams();
      body.append("text", text);
      body.append("account", fieldValue("id_account"));
      body.append("template", fieldValue("id_template"));
      body.append("defaults", fieldValue("id_defaults"));
      fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(textarea), "X-Requested-With": "XMLHttpRequest" },
        body: body
      })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          // Answers can arrive out of order: only the latest question counts.
          if (mine === sequence) render(box, textarea, data, text);
        })
        .catch(function (error) {
          if (mine === sequence) box.textContent = "Could not count this message (" + error.message + ").";
        });
    }

    function later() {
      clearTimeout(timer);
      timer = setTimeout(ask, DELAY_MS);
    }

    textarea.addEventListener("input", later);
    ["id_account", "id_template", "id_defaults"].forEach(function (id) {
      var field = document.getElementById(id);
      if (!field || field === textarea) return;
      field.addEventListener("change", later);
      // Autocomplete (select2) widgets announce changes through jQuery only.
      if (window.django && window.django.jQuery) window.django.jQuery(field).on("change", later);
    });
    ask();
  }

  function start() {
    document.querySelectorAll("textarea[data-sms-counter]").forEach(setup);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
