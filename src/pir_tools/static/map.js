// The map of pir serve's page, loaded only for georeferenced indexes (docs/search-and-geo.md, "Serving",
// "Map"). Leaflet (vendored: static/leaflet/) draws each hit's footprint over the scenes' own quicklooks,
// which the server warps to Web Mercator (/api/quicklook/PATH); a web base map only when `pir serve
// --basemap` named one. search.js sends the hits ("pir:hits") and the result under the pointer
// ("pir:hover"). Paths and windows come from the index: they reach the DOM as text, never as HTML.
(() => {
  const box = document.getElementById("map"), results = document.getElementById("results");
  if (!box || !window.L) return;
  const LABELS = 50;                    // hits with a permanent rank label; the others show it on hover
  let pending = /^#hit=(\d+)$/.exec(location.hash);   // #hit=N: open hit N once the first results are drawn
  const map = L.map(box, {zoomSnap: 0.25}).setView([20, 0], 2);
  map.createPane("quicklooks");         // above a web base map (tilePane), under the footprints (overlayPane)
  if (box.dataset.basemap) {
    const credit = document.createElement("span");
    credit.textContent = box.dataset.attribution || "";   // Leaflet shows attributions as HTML: escaped here
    // tile servers ask for a Referer: the tiles (only) send the page's origin, 127.0.0.1 and its port
    L.tileLayer(box.dataset.basemap, {attribution: credit.innerHTML, maxZoom: 19, referrerPolicy: "strict-origin"})
      .addTo(map);
  }
  const overlays = new Map();           // path -> promise of its quicklook layer (null when refused)
  const footprints = L.featureGroup().addTo(map);
  let shown = [], selected = 0, fitted = false;   // shown[rank] = {shape, hit}

  function quicklook(path, url) {
    if (!overlays.has(path)) {
      overlays.set(path, fetch(url).then((reply) => (reply.ok ? reply.json() : null)).then((made) => {
        if (!made) return null;
        const [west, south, east, north] = made.bounds;
        const layer = L.imageOverlay(made.image, [[south, west], [north, east]],
                                     {pane: "quicklooks", className: "quicklook", alt: `quicklook of ${path}`});
        layer.on("load", () => layer.getElement().classList.add("loaded"));   // tests read this from the DOM
        return layer.addTo(map);
      }).catch(() => null));
    }
    return overlays.get(path);
  }

  const figureOf = (rank) => results.querySelector(`figure[data-rank="${rank}"]`);

  function paint(rank, hot) {
    const item = shown[rank];
    if (!item) return;
    const on = hot || rank === selected;
    item.shape.setStyle(on ? {color: "#ff3d00", weight: 3, fillOpacity: 0.25}
                           : {color: "#ffd400", weight: 2, fillOpacity: 0.06});
    if (on) item.shape.bringToFront();
    const fig = figureOf(rank);
    if (fig) fig.classList.toggle("hot", Boolean(hot));
  }

  function popup(rank) {
    const {hit} = shown[rank];
    const div = document.createElement("div"); div.className = "map-popup";
    const img = document.createElement("img"); img.className = "popup-img"; img.src = hit.thumb; img.alt = hit.path;
    const line = document.createElement("div"); line.className = "score";
    line.textContent = `#${rank} ${hit.score.toFixed(3)}${hit.scene ? ` [${hit.scene}]` : ""}`;
    const link = document.createElement("a"); link.href = hit.image; link.target = "_blank";
    link.textContent = hit.window ? `${hit.path} [${hit.window}]` : hit.path;   // a window: its crop
    div.append(img, line, link);
    return div;
  }

  // A click on a footprint: the tile in a popup, its result marked and scrolled to, the address says #hit=N.
  function open(rank) {
    const item = shown[rank];
    if (!item) return;
    const before = selected; selected = rank;
    paint(before, false); paint(rank, false);
    results.querySelectorAll("figure.selected").forEach((fig) => fig.classList.remove("selected"));
    const fig = figureOf(rank);
    if (fig) { fig.classList.add("selected"); fig.scrollIntoView({block: "nearest"}); }
    item.shape.bindPopup(popup(rank), {maxWidth: 260, className: "hit-popup"}).openPopup();
    history.replaceState(null, "", `${location.pathname}${location.search}#hit=${rank}`);
  }

  document.addEventListener("pir:hits", (event) => {
    map.closePopup(); footprints.clearLayers(); shown = []; selected = 0;
    event.detail.forEach((hit, i) => {
      if (!hit.footprint) return;
      const rank = i + 1;
      const shape = L.polygon(hit.footprint.map(([lon, lat]) => [lat, lon]), {className: "footprint"});
      shape.bindTooltip(String(rank), {permanent: rank <= LABELS, direction: "center", className: "rank-label"});
      shape.on("click", () => open(rank));
      shape.on("mouseover", () => paint(rank, true)).on("mouseout", () => paint(rank, false));
      shown[rank] = {shape, hit};
      footprints.addLayer(shape);
      paint(rank, false);
      if (hit.quicklook) quicklook(hit.path, hit.quicklook);
    });
    if (footprints.getLayers().length) {
      map.fitBounds(footprints.getBounds(), {padding: [24, 24], maxZoom: 18});
      fitted = true;
    }
    if (pending && shown[Number(pending[1])]) shown[Number(pending[1])].shape.fire("click");   // as a click does
    pending = null;
  });
  document.addEventListener("pir:hover", (event) => paint(event.detail.rank, event.detail.on));

  // Before any search: the quicklooks of all the index's scenes (when it has few), the map fitted to them.
  fetch("/api/info").then((reply) => (reply.ok ? reply.json() : null)).then((info) => {
    if (!info) return null;
    return Promise.all(info.rasters.map((raster) => quicklook(raster.path, raster.quicklook)));
  }).then((layers) => {
    const bounds = (layers || []).filter(Boolean).map((layer) => layer.getBounds());
    if (!fitted && bounds.length) {
      map.fitBounds(bounds.reduce((all, one) => all.extend(one), L.latLngBounds(bounds[0].getSouthWest(),
                                                                                bounds[0].getNorthEast())));
    }
  }).catch(() => null);
})();
