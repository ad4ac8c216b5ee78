// Members of a component, a page at a time: sorted by gamma, MSE or log-likelihood, filtered
// by any catalogue column and by flag.
import { api, componentLabel, componentSelect, el, image, number, objectLink, option, section, state } from './common.js';

const query = { component: 0, sort: 'gamma', order: 'desc', page: 0, per_page: 60, column: '', value: '', low: '', high: '', flag: '' };
const SORTS = { gamma: 'γ (most probable first)', mse: 'reconstruction MSE', log_likelihood: 'log-likelihood' };

export async function showMembers(argument) {
  if (argument !== '' && Number(argument) !== query.component) Object.assign(query, { component: Number(argument), page: 0 });
  const view = section('members');
  view.append(el('h2', {}, 'Members of component ', componentSelect(query.component, c => { location.hash = `#members/${c}`; })),
    controls(), el('div', { id: 'pager', class: 'pager' }), el('div', { id: 'grid', class: 'grid' }));
  await loadPage();
}

function controls() {
  const change = key => event => { query[key] = event.target.value; query.page = 0; loadPage(); };
  const sort = el('select', { id: 'sort', onchange: change('sort') }, ...Object.entries(SORTS).map(([k, label]) => option(k, label, query.sort)));
  const order = el('select', { id: 'order', onchange: change('order') },
    option('desc', 'highest first', query.order), option('asc', 'lowest first', query.order));
  const flags = el('select', { id: 'flag-filter', onchange: change('flag') }, option('', 'all objects', query.flag),
    option('any', 'flagged (any flag)', query.flag), ...state.summary.flags.map(f => option(f, `flagged "${f}"`, query.flag)));
  const filter = el('span', { id: 'filter-value' });
  const column = el('select', { id: 'filter-column', onchange: event => {
    Object.assign(query, { column: event.target.value, value: '', low: '', high: '', page: 0 });
    filterInputs(filter);
    loadPage();
  } }, option('', 'no filter', query.column), ...state.summary.columns.map(c => option(c.name, c.name, query.column)));
  filterInputs(filter);
  return el('div', { class: 'controls' }, el('label', {}, 'sort by ', sort), order,
    el('label', {}, 'filter ', column), filter, el('label', {}, 'show ', flags));
}

function filterInputs(container) {
  container.replaceChildren();
  const described = state.summary.columns.find(c => c.name === query.column);
  if (!described) return;
  const set = key => event => { query[key] = event.target.value; query.page = 0; loadPage(); };
  if (described.kind === 'category') {
    container.append(el('select', { onchange: set('value') }, option('', 'any value', query.value),
      ...described.values.map(v => option(v, v, query.value))));
  } else if (described.kind === 'number') {
    container.append(el('input', { type: 'number', step: 'any', placeholder: 'min', value: query.low, onchange: set('low') }),
      ' – ', el('input', { type: 'number', step: 'any', placeholder: 'max', value: query.high, onchange: set('high') }));
  } else {
    container.append(el('input', { type: 'text', placeholder: 'exact value', value: query.value, onchange: set('value') }));
  }
}

function searchParameters() {
  const parameters = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === '' || (['value', 'low', 'high'].includes(key) && !query.column)) continue;
    parameters.set(key, value);
  }
  return parameters;
}

async function loadPage() {
  const grid = document.getElementById('grid');
  const result = await api(`/api/members?${searchParameters()}`);
  pager(result);
  grid.replaceChildren(...result.rows.map(card));
  if (!result.rows.length) grid.append(el('p', { class: 'hint' }, 'no members match'));
  grid.dataset.loaded = `${query.component}:${query.sort}:${query.order}:${result.page}`;  // tests wait for this
}

function pager(result) {
  const turn = step => () => { query.page += step; loadPage(); };
  document.getElementById('pager').replaceChildren(
    el('button', { type: 'button', id: 'previous', onclick: turn(-1), disabled: result.page === 0 }, '‹ previous'),
    el('span', { id: 'page-info' }, `page ${result.page + 1} of ${result.pages} · ${result.total.toLocaleString()} `,
      `members of ${componentLabel(query.component)}`),
    el('button', { type: 'button', id: 'next', onclick: turn(1), disabled: result.page + 1 >= result.pages }, 'next ›'));
}

function card(row) {
  return objectLink(row.id_str, el('figure', { class: row.flag ? 'card flagged' : 'card', 'data-id': row.id_str },
    image(row.id_str, 'input', 'thumb'),
    el('figcaption', {}, el('span', { class: 'id' }, row.id_str),
      el('span', { class: 'values' }, `γ ${row.gamma === null ? '–' : row.gamma.toFixed(3)}`),
      el('span', { class: 'values' }, `MSE ${number(row.mse, 2)}`),
      el('span', { class: 'values' }, `log L ${number(row.log_likelihood, 3)}`),
      row.flag ? el('span', { class: 'flag', title: row.flag }, row.flag) : '')));
}
