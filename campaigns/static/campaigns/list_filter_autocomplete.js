// The campaign list filter: choosing a campaign in the autocomplete reloads
// the list filtered by it (?campaign__id__exact=<id>), keeping the other
// filters and the search, and starting again at the first page.
'use strict';
{
    function follow(event) {
        const select = event.target;
        const params = new URLSearchParams(window.location.search);
        params.delete('p');
        if (select.value) {
            params.set(select.name, select.value);
        } else {
            params.delete(select.name);
            params.delete('status__exact');
        }
        window.location.search = params.toString();
    }
    function init() {
        // Looked up here, not at load: jQuery is set up by admin/js/jquery.init.js.
        const $ = window.django && window.django.jQuery;
        document.querySelectorAll('select[data-list-filter]').forEach(function(select) {
            if ($) {
                $(select).on('change', follow);  // select2 reports through jQuery
            } else {
                select.addEventListener('change', follow);
            }
        });
    }
    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', init);
    } else {
        init();
    }
}
