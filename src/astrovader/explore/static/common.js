// Shared by every view: API calls whose failures show in the page, DOM building (text only:
// names and notes are never parsed as HTML), colours and the gamma bar chart.

export const state = { summary: null, components: [], names: {} };

export function showError(message) {
  document.getElementById('error-text').textContent = message;
  document.getElementById('error').hidden = false;
}

export function clearError() {
  document.getElementById('error').hidden = true;
}

export function notice(message) {
  const box = document.getElementById('notice');
  box.textContent = message;
  box.hidden = false;
}

// JSON from the API; a failed request shows its one-line message in the page and throws.
export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw shown(`the explorer server is not answering (${error.message})`);
  }
  const isJson = (response.headers.get('content-type') || '').includes('json');
  const body = isJson ? await response.json() : null;
  if (!response.ok) {
    throw shown((body && body.error) || `${response.status} ${response.statusText}: ${path}`);
  }
  return body;
}

// An error already in the page: event handlers may leave it uncaught without a console report.
function shown(message) {
  showError(message);
  return Object.assign(new Error(message), { shown: true });
}

window.addEventListener('unhandledrejection', event => { if (event.reason && event.reason.shown) event.preventDefault(); });

export function put(path, body) {
  return api(path, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children);  // strings become text nodes
  return node;
}

export function option(value, label, selected) {
  return el('option', { value, selected: String(value) === String(selected) }, label);
}

export function imageUrl(id, kind = 'input') {
  return `/api/image?id=${encodeURIComponent(id)}&kind=${kind}`;
}

export function image(id, kind, className) {
  const picture = el('img', { src: imageUrl(id, kind), alt: `${kind} ${id}`, class: className, loading: 'lazy' });
  picture.addEventListener('error', () => picture.replaceWith(el('span', { class: `${className} missing` }, 'no image')));
  return picture;
}

export function objectLink(id, ...children) {
  return el('a', { href: `#object/${encodeURIComponent(id)}`, title: id }, ...children);
}

export function number(value, digits = 3) {
  if (value === null || value === undefined) return '–';
  if (typeof value !== 'number') return String(value);
  return Math.abs(value) >= 1e4 || (value !== 0 && Math.abs(value) < 1e-2) ? value.toExponential(digits - 1) : value.toPrecision(digits);
}

export function componentLabel(component) {
  const name = state.names[component];
  return name ? `${component} · ${name}` : `${component}`;
}

export async function loadComponents() {
  state.components = await api('/api/components');
  state.names = Object.fromEntries(state.components.filter(c => c.name).map(c => [c.component, c.name]));
  return state.components;
}

export function componentSelect(selected, onchange) {
  const select = el('select', { id: 'component-select', onchange: event => onchange(Number(event.target.value)) });
  for (const c of state.components) select.append(option(c.component, `${componentLabel(c.component)} (${c.size})`, selected));
  return select;
}

// Matplotlib's tab20 (components and categories) and viridis (numbers).
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
  '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5'];
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

export function categoryColour(index) {
  return PALETTE[index % PALETTE.length];
}

export function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const low = Math.floor(Math.min(x, VIRIDIS.length - 2));
  const mix = VIRIDIS[low].map((channel, i) => Math.round(channel + (VIRIDIS[low + 1][i] - channel) * (x - low)));
  return `rgb(${mix.join(',')})`;
}

export function swatch(colour) {
  return el('span', { class: 'swatch', style: `background:${colour}` });
}

export function gammaBars(gamma, highlight) {
  const chart = el('div', { class: 'gamma-bars', 'aria-label': 'gamma per component' });
  gamma.forEach((value, component) => {
    const width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
    chart.append(el('div', { class: component === highlight ? 'gamma-row own' : 'gamma-row' },
      el('span', { class: 'gamma-label' }, componentLabel(component)),
      el('span', { class: 'gamma-track' }, el('span', { class: 'gamma-fill', style: `width:${width};background:${categoryColour(component)}` })),
      el('span', { class: 'gamma-value' }, value === null ? '–' : value.toFixed(2))));
  });
  return chart;
}

export function section(name) {
  const node = document.getElementById(`view-${name}`);
  node.replaceChildren();
  return node;
}
