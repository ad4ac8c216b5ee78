// The 2-D latent map of a subsample (t-SNE or PCA of mu_z): points coloured by component
// or by any catalogue column; a click shows that galaxy beside the map.
import { api, categoryColour, componentLabel, el, gammaBars, number, objectLink, option, section, state, swatch, viridis } from './common.js';
import { pictures } from './object.js';

const SIZE = 640;
const MARGIN = 12;
const current = { color: '', points: null, selected: null, pixels: [] };

export async function showMap() {
  const view = section('map');
  const status = el('p', { class: 'hint', id: 'map-status' }, 'loading the map…');
  const canvas = el('canvas', { id: 'map-canvas', width: SIZE, height: SIZE });
  const colour = el('select', { id: 'map-colour', onchange: event => { current.color = event.target.value; load(status, canvas); } },
    option('', 'colour by component', current.color),
    ...state.summary.columns.filter(c => c.kind !== 'text').map(c => option(c.name, `colour by ${c.name}`, current.color)));
  const side = el('div', { class: 'map-side' }, colour, el('div', { id: 'legend' }), el('div', { id: 'map-object' }));
  view.append(el('h2', {}, 'Latent map'), status, el('div', { class: 'map' }, canvas, side));
  canvas.addEventListener('click', event => select(nearest(canvas, event)));
  canvas.addEventListener('mousemove', event => {
    const index = nearest(canvas, event);
    canvas.title = index === null ? '' : `${current.points.id[index]} (component ${componentLabel(current.points.component[index])})`;
  });
  await load(status, canvas);
}

async function load(status, canvas) {
  const query = current.color ? `?color=${encodeURIComponent(current.color)}` : '';
  const answer = await api(`/api/map${query}`);
  if (answer.status !== 'ready') {  // computing in the background: ask again shortly
    status.textContent = `${answer.message}; this page updates when it is ready`;
    setTimeout(() => { if (document.body.dataset.view === 'map') load(status, canvas); }, 2000);
    return;
  }
  current.points = answer;
  status.textContent = `${answer.method} of μ_z for ${answer.points.toLocaleString()} objects (a seeded subsample). ` +
    'Click a point to see the galaxy.';
  project(answer);
  draw(canvas);
  legend(answer);
  canvas.dataset.ready = 'true';
}

// For tests and the browser console: where an object's point is drawn, in canvas pixels.
window.explorerMap = { pixelOf: id => current.pixels[current.points.id.indexOf(id)] || null, ids: () => current.points.id };

function project(points) {
  const range = values => [Math.min(...values), Math.max(...values)];
  const [x0, x1] = range(points.x);
  const [y0, y1] = range(points.y);
  const scale = (SIZE - 2 * MARGIN) / Math.max(x1 - x0, y1 - y0, 1e-9);
  const xOffset = (SIZE - scale * (x1 - x0)) / 2;
  const yOffset = (SIZE - scale * (y1 - y0)) / 2;
  current.pixels = points.x.map((x, i) => [xOffset + scale * (x - x0), SIZE - (yOffset + scale * (points.y[i] - y0))]);
}

function colours(points) {
  const colour = points.color;
  if (!colour) return points.component.map(categoryColour);
  if (colour.kind === 'category') return colour.codes.map(code => categoryColour(code));
  const known = colour.values.filter(v => v !== null);
  const low = Math.min(...known);
  const span = Math.max(...known) - low || 1;
  return colour.values.map(v => (v === null ? '#cccccc' : viridis((v - low) / span)));
}

function draw(canvas) {
  const context = canvas.getContext('2d');
  context.clearRect(0, 0, SIZE, SIZE);
  const fill = colours(current.points);
  context.globalAlpha = 0.75;
  current.pixels.forEach(([x, y], i) => {
    context.fillStyle = fill[i];
    context.beginPath();
    context.arc(x, y, 2.5, 0, 2 * Math.PI);
    context.fill();
  });
  context.globalAlpha = 1;
  if (current.selected !== null) {
    const [x, y] = current.pixels[current.selected];
    context.strokeStyle = '#000';
    context.lineWidth = 2;
    context.beginPath();
    context.arc(x, y, 7, 0, 2 * Math.PI);
    context.stroke();
  }
}

function legend(points) {
  const box = document.getElementById('legend');
  const colour = points.color;
  if (colour && colour.kind === 'number') {
    const known = colour.values.filter(v => v !== null);
    box.replaceChildren(el('div', { class: 'gradient' }), el('div', { class: 'gradient-labels' },
      el('span', {}, number(Math.min(...known))), el('span', {}, number(Math.max(...known)))));
    return;
  }
  const names = colour ? colour.categories : state.components.map(c => componentLabel(c.component));
  box.replaceChildren(...names.map((name, i) => el('div', { class: 'legend-row' }, swatch(categoryColour(i)), name)));
}

function nearest(canvas, event) {
  if (!current.points) return null;
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * (SIZE / box.width);
  const y = (event.clientY - box.top) * (SIZE / box.height);
  let best = null;
  let bestDistance = 64;  // within 8 px
  current.pixels.forEach(([px, py], i) => {
    const distance = (px - x) ** 2 + (py - y) ** 2;
    if (distance < bestDistance) [best, bestDistance] = [i, distance];
  });
  return best;
}

async function select(index) {
  if (index === null) return;
  current.selected = index;
  draw(document.getElementById('map-canvas'));
  const found = await api(`/api/object?id=${encodeURIComponent(current.points.id[index])}`);
  document.getElementById('map-object').replaceChildren(
    el('h3', {}, objectLink(found.id_str, found.id_str), ` · component ${componentLabel(found.component)}`),
    pictures(found), gammaBars(found.gamma, found.component),
    found.annotation.flag ? el('p', { class: 'flag' }, `flagged: ${found.annotation.flag}`) : '');
  document.getElementById('map-object').dataset.id = found.id_str;
}
