// The import page's progress bar: polls the job's progress URL while the
// job is open and reloads the page when its state changes (checked, done,
// cancelled...), so the page always shows the current state and buttons.
'use strict';
{
    const root = document.querySelector('.import-job[data-progress-url]');
    if (root && root.dataset.open === '1') {
        const bar = root.querySelector('.import-bar');
        const percent = root.querySelector('.import-percent');
        const number = new Intl.NumberFormat();
        const set = function(selector, value) {
            const node = root.querySelector(selector);
            if (node) { node.textContent = number.format(value); }
        };
        const poll = function() {
            fetch(root.dataset.progressUrl, {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
                .then(function(response) { return response.json(); })
                .then(function(data) {
                    if (data.status !== root.dataset.status || !data.open) {
                        window.location.reload();
                        return;
                    }
                    if (bar) { bar.value = data.percent; }
                    if (percent) { percent.textContent = data.percent + ' %'; }
                    set('.import-rows-read', data.rows_read);
                    set('.import-rows-applied', data.rows_applied);
                    set('.import-rows-total', data.rows_total);
                    set('.import-issues', data.issues);
                    window.setTimeout(poll, 1000);
                })
                .catch(function() { window.setTimeout(poll, 5000); });
        };
        window.setTimeout(poll, 1000);
    }
}
