// Flist Hub: progressive enhancement only. Every form works without this file.
'use strict';
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // Copy buttons (shown only when script runs).
  function wireCopy(root) {
    $$('button.copy[data-copy]', root).forEach((b) => {
      b.hidden = false;
      b.addEventListener('click', async () => {
        const text = b.getAttribute('data-copy');
        try { await navigator.clipboard.writeText(text); }
        catch (e) { const i = b.previousElementSibling; if (i && i.select) { i.select(); document.execCommand('copy'); } }
        const old = b.textContent; b.textContent = 'Copied'; setTimeout(() => { b.textContent = old; }, 1500);
      });
    });
  }

  // Account switcher submits on change.
  $$('select[data-autosubmit]').forEach((s) => s.addEventListener('change', () => s.form.submit()));

  // Contents tree: open and close directories in place.
  function wireTree(root) {
    $$('a.dir[data-fragment]', root).forEach((a) => {
      a.addEventListener('click', async (ev) => {
        if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
        ev.preventDefault();
        const row = a.closest('tr');
        const next = row.nextElementSibling;
        if (a.getAttribute('aria-expanded') === 'true') {
          if (next && next.classList.contains('sub')) next.remove();
          a.setAttribute('aria-expanded', 'false');
          return;
        }
        const r = await fetch(a.getAttribute('data-fragment'), { credentials: 'same-origin' });
        if (!r.ok) { window.location = a.href; return; }
        const sub = document.createElement('tr');
        sub.className = 'sub';
        const td = document.createElement('td');
        td.colSpan = row.children.length;
        td.innerHTML = await r.text();
        sub.appendChild(td);
        row.after(sub);
        a.setAttribute('aria-expanded', 'true');
        wireTree(td);
      });
    });
  }

  // The flist name the hub gives an archive (as `flist_name_for`): extensions off, `.flist` on.
  const flistName = (n) => {
    let stem = n.split(/[\/\\]/).pop();
    for (const ext of ['.tar.gz', '.tgz', '.tar.zst', '.tar.xz', '.tar.bz2', '.tar', '.gz', '.flist']) {
      if (stem.length > ext.length && stem.toLowerCase().endsWith(ext)) { stem = stem.slice(0, -ext.length); break; }
    }
    return stem + '.flist';
  };
  const pick = $('#upload-file'), nameField = $('#upload-name');
  if (pick && nameField) {
    // The default name, shown once a file is picked (the user may change it).
    pick.addEventListener('change', () => {
      const f = pick.files[0];
      if (f && (!nameField.value || nameField.dataset.auto === '1')) {
        nameField.value = flistName(f.name);
        nameField.dataset.auto = '1';
      }
    });
    nameField.addEventListener('input', () => { nameField.dataset.auto = ''; });
  }

  // Uploads: bytes sent, then the job's progress, then the new flist's page.
  const form = $('#upload-form');
  if (form && window.XMLHttpRequest) {
    form.addEventListener('submit', async (ev) => {
      const file = $('#upload-file').files[0];
      if (!file) return;
      ev.preventDefault();
      // Ask before replacing an flist of the same name (the hub refuses it unasked).
      const nameInput = $('#upload-name'), replace = $('#upload-replace');
      if (nameInput && replace && !replace.checked) {
        const name = flistName(nameInput.value.trim() || file.name);
        let exists = false;
        try {
          const r = await fetch('/' + encodeURIComponent(form.dataset.repo) + '/' + encodeURIComponent(name) + '.md', { method: 'HEAD', credentials: 'same-origin' });
          exists = r.ok;
        } catch (e) { /* the hub says so if it does */ }
        if (exists) {
          if (!window.confirm(form.dataset.repo + ' already holds ' + name + '. Replace it?')) return;
          replace.checked = true;
        }
      }
      const box = $('#upload-progress'), err = $('#upload-js-error');
      const sendBar = $('#send-bar'), sendText = $('#send-text');
      const jobBar = $('#job-bar'), jobText = $('#job-text');
      box.hidden = false; err.textContent = '';
      $('#upload-submit').disabled = true;
      const fail = (m) => { err.textContent = m; $('#upload-submit').disabled = false; };
      let job = null;
      if (form.dataset.mode === 'archive') {
        try {
          const r = await fetch('/upload/job', { method: 'POST', credentials: 'same-origin' });
          if (r.ok) job = (await r.json()).job;
        } catch (e) { /* the upload still works, without conversion events */ }
      }
      let es = null;
      const follow = () => {
        if (!job || es) return;
        es = new EventSource('/listen/' + job);
        es.onmessage = (m) => {
          const e = JSON.parse(m.data);
          if (e.status === 'update') { jobBar.value = e.progress; jobText.textContent = e.message; }
          else if (e.status === 'info') { jobBar.value = 100; jobText.textContent = 'done'; es.close(); }
          else { jobText.textContent = e.message; es.close(); }
        };
      };
      const xhr = new XMLHttpRequest();
      xhr.open('POST', form.action + (job ? '?job=' + encodeURIComponent(job) : ''));
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) {
          const p = Math.round(100 * e.loaded / e.total);
          sendBar.value = p; sendText.textContent = p + '% of ' + (e.total / 1048576).toFixed(1) + ' MB';
        }
        follow();
      };
      xhr.upload.onload = () => { sendBar.value = 100; sendText.textContent = 'sent'; follow(); };
      xhr.onerror = () => fail('The connection to the hub failed.');
      xhr.onload = () => {
        let v = null;
        try { v = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300 && v && v.url) {
          jobBar.value = 100; jobText.textContent = 'stored ' + v.name;
          if (es) es.close();
          window.location = v.url;
        } else {
          if (es) es.close();
          fail((v && v.message) ? v.message : 'The hub answered ' + xhr.status + '.');
        }
      };
      const data = new FormData(form);
      xhr.send(data);
    });
  }

  // Docker conversion: post, then follow the job.
  const docker = $('#docker');
  if (docker) {
    docker.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const status = $('#status'), bar = $('#bar');
      const show = (t) => { status.textContent = t; };
      const r = await fetch('/api/flist/me/docker', { method: 'POST', credentials: 'same-origin', body: new URLSearchParams(new FormData(docker)) });
      const v = await r.json();
      if (!r.ok) { show('error: ' + v.message); return; }
      bar.hidden = false;
      show('started ' + v.payload.name);
      const es = new EventSource('/listen/' + v.payload.job);
      es.onmessage = (m) => {
        const e = JSON.parse(m.data);
        if (e.status === 'update') { bar.value = e.progress; show(e.message); }
        else if (e.status === 'info') {
          bar.value = 100; es.close();
          status.textContent = '';
          const a = document.createElement('a');
          a.href = '/' + encodeURIComponent(e.info.repository) + '/' + encodeURIComponent(e.info.name) + '.md';
          a.textContent = e.info.repository + '/' + e.info.name;
          status.append('done: ', a);
        } else { es.close(); show('error: ' + e.message); }
      };
    });
  }

  wireCopy(document);
  wireTree(document);
})();
