// The explorer's page: a hash router over five views, the run's summary and the export buttons.
import { api, clearError, el, loadComponents, notice, state } from './common.js';
import { showComponents } from './components.js';
import { showMap } from './map.js';
import { showMembers } from './members.js';
import { showObject } from './object.js';
import { showSamples } from './samples.js';

const VIEWS = { components: showComponents, members: showMembers, map: showMap, samples: showSamples, object: showObject };

async function route() {
  const [first, ...rest] = location.hash.slice(1).split('/');
  const name = VIEWS[first] ? first : 'components';
  const argument = rest.length ? decodeURIComponent(rest.join('/')) : '';
  clearError();
  document.getElementById('notice').hidden = true;
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
  for (const link of document.querySelectorAll('nav a')) link.classList.toggle('active', link.dataset.view === name);
  document.body.dataset.view = name;
  try {
    await VIEWS[name](argument);
  } catch (error) {
    if (!error.shown) throw error;  // not a failed request (api() shows those): a bug, for the console
  } finally {
    document.body.dataset.ready = name;  // tests wait for this
  }
}

// Written into the run folder by the server; the link downloads it without holding it in the page.
async function exportCatalogue(format) {
  const box = document.getElementById('notice');
  notice(`exporting the annotated catalogue as ${format}…`);
  let answer;
  try {
    answer = await api(`/api/export?format=${format}`, { method: 'POST' });
  } catch (error) {
    box.hidden = true;  // api() shows why
    return;
  }
  box.replaceChildren(`exported: ${state.summary.run}/${answer.file} (${answer.rows.toLocaleString()} rows, ` +
    `${(answer.bytes / 1e6).toFixed(1)} MB) `, el('a', { href: answer.download, download: '', id: 'download' }, 'download'));
}

async function start() {
  document.getElementById('error-close').addEventListener('click', clearError);
  for (const button of document.querySelectorAll('#export button')) {
    button.addEventListener('click', () => exportCatalogue(button.dataset.format));
  }
  try {
    state.summary = await api('/api/summary');
    await loadComponents();
  } catch (error) {
    document.getElementById('run-info').textContent = 'not available';
    document.body.dataset.ready = 'failed';
    return;
  }
  const s = state.summary;
  document.getElementById('run-info').textContent =
    `${s.run} · ${s.catalogue} · ${s.rows.toLocaleString()} objects · ${s.components} components`;
  window.addEventListener('hashchange', route);
  await route();
}

start();
