// Synthetic samples of one component: z ~ N(mu_c, sigma_c^2), decoded (a grid PNG per seed).
import { api, componentLabel, componentSelect, el, image, objectLink, option, section, state } from './common.js';

const current = { component: 0, seed: 0, count: 16 };

export async function showSamples(argument) {
  if (argument !== '') current.component = Number(argument);
  const view = section('samples');
  const picture = el('img', { id: 'samples-image', class: 'samples', alt: 'synthetic samples' });
  const caption = el('p', { class: 'hint' });
  const draw = () => {
    picture.src = `/api/samples?component=${current.component}&seed=${current.seed}&n=${current.count}`;
    caption.textContent = `${current.count} synthetic galaxies of component ${componentLabel(current.component)} ` +
      `(seed ${current.seed}): z drawn from the component's Gaussian and decoded; the same seed gives the same images.`;
  };
  picture.addEventListener('error', () => {
    caption.textContent = 'these samples could not be made';
    api(picture.src).catch(() => {});  // asked again for the server's reason, which api() shows
  });
  const count = el('select', { onchange: event => { current.count = Number(event.target.value); draw(); } },
    ...[8, 16, 32, 64].filter(n => n <= state.summary.samples_limit).map(n => option(n, `${n} samples`, current.count)));
  view.append(el('h2', {}, 'Synthetic samples'),
    el('div', { class: 'controls' },
      el('label', {}, 'component ', componentSelect(current.component, c => { location.hash = `#samples/${c}`; })),
      count,
      el('button', { type: 'button', id: 'new-samples', onclick: () => { current.seed += 1; draw(); } }, 'new samples'),
      el('a', { href: `#members/${current.component}`, class: 'button' }, 'real members')),
    caption, picture, el('h3', {}, 'Its most probable real members, for comparison'), realMembers(current.component));
  draw();
}

function realMembers(component) {
  const known = state.components.find(c => c.component === component);  // none: the samples say why
  return el('div', { class: 'strip' }, ...(known ? known.top : []).map(id => objectLink(id, image(id, 'input', 'thumb'))));
}
