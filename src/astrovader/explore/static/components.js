// Components: size, weight, silhouette, most probable members; names and notes edited in place.
import { categoryColour, el, image, loadComponents, number, objectLink, put, section, state, swatch } from './common.js';

export async function showComponents() {
  const view = section('components');
  await loadComponents();
  const s = state.summary;
  view.append(el('h2', {}, 'Components'),
    el('p', { class: 'hint' }, `${s.readable.toLocaleString()} of ${s.rows.toLocaleString()} objects have a component. `,
      'Size: objects whose most probable component it is; weight: the mixture weight π; silhouette: mean simplified ',
      `silhouette (eq. 18) of its members (of ${s.silhouette_members.toLocaleString()} drawn at random when it has more). Names and notes are saved to ${s.annotations} as you type Enter or leave the field.`));
  const table = el('table', { class: 'components' },
    el('thead', {}, el('tr', {}, ...['component', 'name', 'note', 'size', 'weight', 'silhouette', 'most probable members', '']
      .map(title => el('th', {}, title)))));
  const body = el('tbody');
  for (const row of state.components) body.append(componentRow(row));
  table.append(body);
  view.append(table);
}

function componentRow(row) {
  const name = el('input', { type: 'text', value: row.name, placeholder: 'name…', maxlength: 80, 'data-component': row.component, class: 'name' });
  const note = el('input', { type: 'text', value: row.note, placeholder: 'note…', maxlength: 2000, class: 'note' });
  const status = el('span', { class: 'saved' });
  const saved = { name: row.name, note: row.note };
  const save = async () => {
    if (name.value.trim() === saved.name && note.value.trim() === saved.note) return;
    const answer = await put('/api/annotations/component', { component: row.component, name: name.value, note: note.value });
    Object.assign(saved, { name: answer.name, note: answer.note });
    state.names[row.component] = answer.name;
    status.textContent = '✓ saved';
    status.title = answer.time;
  };
  for (const field of [name, note]) {
    field.addEventListener('change', save);
    field.addEventListener('keydown', event => { if (event.key === 'Enter') save(); });
  }
  const members = el('td', { class: 'top' }, ...row.top.map(id => objectLink(id, image(id, 'input', 'thumb small'))));
  return el('tr', { 'data-component': row.component },
    el('td', {}, swatch(categoryColour(row.component)), String(row.component)),
    el('td', {}, name, status),
    el('td', {}, note),
    el('td', { class: 'number size' }, row.size.toLocaleString()),
    el('td', { class: 'number' }, `${(100 * row.weight).toFixed(1)} %`),
    el('td', { class: 'number' }, number(row.silhouette, 2)),
    members,
    el('td', { class: 'actions' },
      el('a', { href: `#members/${row.component}`, class: 'button' }, 'members'),
      el('a', { href: `#samples/${row.component}`, class: 'button' }, 'samples')));
}
