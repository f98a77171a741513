'use strict';

async function show(id, url, pick) {
  const el = document.getElementById(id);
  try {
    const answer = await fetch(url);
    el.textContent = pick(await answer.json());
  } catch (err) {
    el.textContent = `unavailable (${err.message})`;
  }
}

show('health', '/api/health', (body) => body.status);
show('hits', '/api/hits', (body) => body.hits);
