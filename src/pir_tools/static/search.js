// The search page's script (pir serve); a file, not inline: the page's CSP allows 'self' only
// (docs/search-and-geo.md, "Serving"). It tells map.js (loaded for georeferenced indexes) about the
// hits with a "pir:hits" event and about the result under the pointer with "pir:hover" events.
const form = document.getElementById("form"), results = document.getElementById("results"),
      status = document.getElementById("status"), sceneBox = document.getElementById("scene");

async function run(params, label) {
  if (sceneBox && sceneBox.value) params.set("scene", sceneBox.value);
  params.set("top", document.getElementById("top").value || "20");
  status.textContent = "searching…";
  const reply = await fetch("/api/search?" + params.toString());
  if (!reply.ok) { status.textContent = "search failed (" + reply.status + ")"; return; }
  const hits = await reply.json();
  results.replaceChildren(...hits.map((hit, rank) => {
    const fig = document.createElement("figure"); fig.className = "hit"; fig.dataset.path = hit.path;
    fig.dataset.rank = rank + 1;
    for (const [type, on] of [["mouseenter", true], ["mouseleave", false]]) {
      const detail = {rank: rank + 1, on};
      fig.addEventListener(type, () => document.dispatchEvent(new CustomEvent("pir:hover", {detail})));
    }
    const img = document.createElement("img"); img.className = "hit-img"; img.src = hit.thumb; img.alt = hit.path;
    img.title = "search by this image";
    img.addEventListener("load", () => fig.classList.add("loaded"));   // tests read this from the DOM
    const like = new URLSearchParams({like: hit.path}), name = hit.window ? `${hit.path} [${hit.window}]` : hit.path;
    if (hit.window) like.set("window", hit.window);   // a window of a large scene: search by that window
    img.addEventListener("click", () => run(new URLSearchParams(like), "images like " + name));
    // text nodes only: paths and scene labels come from file names, never parsed as HTML
    const cap = document.createElement("figcaption");
    const score = document.createElement("span"); score.className = "score";
    score.textContent = `#${rank + 1} ${hit.score.toFixed(3)} `;
    cap.appendChild(score);
    if (hit.scene) {
      const scene = document.createElement("span"); scene.className = "meta"; scene.textContent = `[${hit.scene}] `;
      cap.appendChild(scene);
    }
    const link = document.createElement("a"); link.href = hit.image; link.textContent = name;   // a window: its crop
    link.target = "_blank"; cap.appendChild(link);
    fig.append(img, cap); return fig;
  }));
  status.textContent = `${hits.length} results for ${label}`;
  const shown = new URLSearchParams(params); history.replaceState(null, "", "?" + shown.toString());
  document.dispatchEvent(new CustomEvent("pir:hits", {detail: hits}));
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = document.getElementById("q").value.trim();
  if (q) run(new URLSearchParams({q}), `“${q}”`);
});

// ?q=...&top=...&scene=... (or ?like=...) in the address runs that search on load: links are shareable.
const start = new URLSearchParams(location.search);
if (start.get("top")) document.getElementById("top").value = start.get("top");
if (sceneBox && start.get("scene")) sceneBox.value = start.get("scene");
if (start.get("q")) { document.getElementById("q").value = start.get("q"); form.requestSubmit(); }
else if (start.get("like")) {
  const like = new URLSearchParams({like: start.get("like")});
  if (start.get("window")) like.set("window", start.get("window"));
  run(like, "images like " + start.get("like") + (start.get("window") ? ` [${start.get("window")}]` : ""));
}
