// Hydrates the islands of a server-rendered page. `bundle` is the path of the islands
// bundle without its extension: `${bundle}.js` is wasm-bindgen's glue (`--target web`),
// whose exports include one function per island type, named as the island's
// `data-component` attribute says. The islands hydrate one after another in the page's
// order, the order in which the server numbered their resources.
async (bundle) => {
  const islands = [...document.querySelectorAll("leptos-island")].filter(
    // An island inside another is rendered by the outer one in the browser.
    (island) => !island.parentElement.closest("leptos-island"),
  );
  if (islands.length > 0) {
    const glue = await import(`${bundle}.js`);
    await glue.default({ module_or_path: `${bundle}.wasm` });
    glue.hydrate();
    for (const island of islands) {
      const hydrateIsland = glue[island.dataset.component];
      if (hydrateIsland) {
        await hydrateIsland(island);
      } else {
        console.error(`The islands bundle has no island ${island.dataset.component}.`);
      }
    }
  }
  document.body.dataset.hydrated = "true";
}
