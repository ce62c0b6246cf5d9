/**
 * The console's only script: the audit page's live tail. It long-polls the JSON API for lines
 * newer than the newest shown and puts each at the top of the table, built with DOM calls and
 * `textContent` only (never markup from data). Served by bastion at `<console>/assets/console.js`
 * and admitted by the CSP by its SHA-256 hash (the page names it as the script's integrity). Without it every page still works (filters, paging,
 * expandable lines, forms); only the tail needs it.
 */
export const CONSOLE_SCRIPT = `'use strict';
(function () {
  var button = document.getElementById('live');
  var table = document.querySelector('#lines tbody');
  var status = document.getElementById('live-status');
  if (!button || !table || !status) return;
  var on = false, newest = button.getAttribute('data-newest') || '', controller = null, shown = 0, refused = 0;
  function cell(row, text, cls) { var td = document.createElement('td'); if (cls) td.className = cls; var c = document.createElement('code'); c.textContent = text; td.appendChild(c); row.appendChild(td); return td; }
  function text(v) { return typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v); }
  function add(entry) {
    var r = entry.record || {}, row = document.createElement('tr');
    row.className = 'line'; row.setAttribute('data-request-id', text(r.requestId));
    cell(row, text(r.ts)); cell(row, text(r.event)); cell(row, text(r.principal)); cell(row, text(r.tool));
    var d = text(r.decision); cell(row, d, d === 'allow' || d === 'deny' || d === 'error' ? d : ''); cell(row, text(r.reason)); cell(row, text(r.requestId), 'opt');
    var td = document.createElement('td'), details = document.createElement('details'), summary = document.createElement('summary'), pre = document.createElement('pre');
    summary.textContent = text(entry.where); pre.textContent = JSON.stringify(r, null, 2); details.appendChild(summary); details.appendChild(pre); td.appendChild(details); row.appendChild(td);
    var none = table.querySelector('tr.none'); if (none) none.remove();
    table.insertBefore(row, table.firstChild);
    while (table.rows.length > 500) table.deleteRow(table.rows.length - 1);
  }
  function poll() {
    if (!on) return;
    refused = 0;
    controller = new AbortController();
    var q = button.getAttribute('data-query') || '';
    var url = button.getAttribute('data-api') + '?' + q + (q ? '&' : '') + 'after=' + encodeURIComponent(newest) + '&wait=1';
    fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' }, signal: controller.signal })
      .then(function (res) { refused = res.ok ? 0 : res.status; if (!res.ok) throw new Error('refused'); return res.json(); })
      .then(function (page) {
        (page.entries || []).forEach(add);
        shown += (page.entries || []).length;
        if (page.newest) newest = page.newest;
        status.textContent = 'Live: ' + shown + ' new line(s)';
        poll();
      })
      .catch(function () { if (!on) return; status.textContent = 'Live tail paused (' + (refused ? 'HTTP ' + refused : 'no connection') + '); retrying'; refused = 0; setTimeout(poll, 5000); });
  }
  button.addEventListener('click', function () {
    on = !on;
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
    button.textContent = on ? 'Stop live tail' : 'Live tail';
    status.textContent = on ? 'Live: waiting for new lines' : 'Stopped';
    if (on) poll(); else if (controller) controller.abort();
  });
})();
`
