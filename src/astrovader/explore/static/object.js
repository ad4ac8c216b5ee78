// One galaxy: its image and reconstruction, gamma over the components, its catalogue columns,
// and its flag and note.
import { api, componentLabel, el, gammaBars, image, number, put, section, state } from './common.js';

export async function showObject(id) {
  const view = section('object');
  const search = el('input', { type: 'search', id: 'object-id', placeholder: 'go to id…', value: id });
  search.addEventListener('keydown', event => {
    if (event.key === 'Enter' && search.value.trim()) location.hash = `#object/${encodeURIComponent(search.value.trim())}`;
  });
  view.append(el('div', { class: 'controls' }, search));
  if (!id) {
    view.append(el('p', { class: 'hint' }, 'Pick a galaxy from the members, the components or the latent map, or type its id.'));
    return;
  }
  const found = await api(`/api/object?id=${encodeURIComponent(id)}`);
  view.append(el('h2', {}, `Object ${found.id_str}`, el('span', { class: 'subtitle' }, ` component ${componentLabel(found.component)}`)),
    el('div', { class: 'object' }, pictures(found), el('div', {}, el('h3', {}, 'γ per component'), gammaBars(found.gamma, found.component)),
      annotationForm(found)),
    el('h3', {}, 'Catalogue columns'), columnsTable(found.columns));
}

export function pictures(found) {
  return el('div', { class: 'pictures' },
    el('figure', {}, image(found.id_str, 'input', 'large'), el('figcaption', {}, 'input')),
    el('figure', {}, image(found.id_str, 'reconstruction', 'large'), el('figcaption', {}, 'reconstruction')));
}

function columnsTable(columns) {
  return el('table', { class: 'columns' }, el('tbody', {}, ...Object.entries(columns).map(([name, value]) =>
    el('tr', {}, el('th', {}, name), el('td', {}, Number.isInteger(value) ? String(value) : number(value, 4))))));
}

function annotationForm(found) {
  const current = { ...found.annotation };
  const status = el('p', { class: 'saved', id: 'annotation-status' }, current.time ? `saved ${current.time}` : 'not annotated');
  const note = el('textarea', { id: 'object-note', rows: 3, maxlength: 2000, placeholder: 'note…' }, current.note);
  const custom = el('input', { type: 'text', id: 'custom-flag', maxlength: 40, placeholder: 'other flag…' });
  const buttons = el('div', { class: 'flags' });
  const save = async (flag, text) => {
    const answer = await put('/api/annotations/object', { id_str: found.id_str, flag, note: text });
    Object.assign(current, answer);
    if (flag && !state.summary.flags.includes(flag)) state.summary.flags.push(flag);
    note.value = answer.note;
    status.textContent = answer.flag || answer.note ? `saved ${answer.time}` : 'annotation cleared';
    drawButtons();
  };
  const drawButtons = () => buttons.replaceChildren(...state.summary.flags.map(flag => el('button', {
    type: 'button', class: current.flag === flag ? 'flag-button active' : 'flag-button', 'data-flag': flag,
    onclick: () => save(current.flag === flag ? '' : flag, note.value),  // a second click removes the flag
  }, flag)));
  drawButtons();
  return el('div', { class: 'annotation' }, el('h3', {}, 'Flag and note'), buttons,
    el('div', {}, custom, el('button', { type: 'button', onclick: () => custom.value.trim() && save(custom.value.trim(), note.value) }, 'flag')),
    note,
    el('div', {}, el('button', { type: 'button', id: 'save-note', onclick: () => save(current.flag, note.value) }, 'save note'),
      el('button', { type: 'button', id: 'clear-annotation', onclick: () => save('', '') }, 'clear')),
    status);
}
