// busflow live map: subscribes to its own viewport and keeps one marker per bus in view.
// Plain ES module, no build step; Leaflet is the global `L` loaded by index.html.

const cfg = JSON.parse(document.getElementById("busflow-config").textContent);
const $ = (id) => document.getElementById(id);

const map = L.map("map", { keyboard: true, preferCanvas: false });
L.tileLayer(cfg.tile_url, { attribution: cfg.tile_attribution, maxZoom: 19 }).addTo(map);
const [w, s, e, n] = cfg.bounds;
map.fitBounds([[s, w], [n, e]]);

const routeLayer = L.layerGroup().addTo(map);
const busLayer = L.layerGroup().addTo(map);
const densityLayer = L.layerGroup().addTo(map);

const routes = new Map(); // route_id -> { short_name, color, layer, enabled }
const buses = new Map(); // vehicle_id -> { marker, from, to, t0, dur, data }
let densityMode = false;
let eventTimes = [];

// ---------------------------------------------------------------- status badge
function setConn(state, text) {
  $("conn").dataset.state = state;
  $("conn-text").textContent = text;
}
function countEvent() {
  eventTimes.push(performance.now());
}
setInterval(() => {
  const now = performance.now();
  eventTimes = eventTimes.filter((t) => now - t < 5000);
  $("rate").textContent = (eventTimes.length / 5).toFixed(1);
  $("in-view").textContent = densityMode ? densityTotal() : buses.size;
  refreshOpenPopup();
}, 1000);

// ---------------------------------------------------------------- stop names for popups
const stopNames = new Map();
async function loadStops() {
  try {
    const res = await fetch("/v1/stops", { headers: authHeaders() });
    if (!res.ok) return;
    for (const s of (await res.json()).stops || []) stopNames.set(s.stop_id, s.name);
  } catch (err) {
    console.warn("stops unavailable", err);
  }
}

// ---------------------------------------------------------------- routes and legend
async function loadRoutes() {
  let body;
  try {
    const res = await fetch("/v1/routes", { headers: authHeaders() });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = await res.json();
  } catch (err) {
    console.warn("routes unavailable", err);
    return;
  }
  const features = body.features || [];
  for (const f of features) {
    const p = f.properties || {};
    const id = p.route_id;
    if (!id) continue;
    const color = "#" + (p.color || p.route_color || "3366CC");
    let r = routes.get(id);
    if (!r) {
      r = { short_name: p.short_name || p.route_short_name || id, color, layer: L.layerGroup(), enabled: true };
      routes.set(id, r);
      r.layer.addTo(routeLayer);
    }
    L.geoJSON(f, { style: { color, weight: 3, opacity: 0.7 }, interactive: false }).addTo(r.layer);
  }
  renderLegend();
}

function renderLegend() {
  const list = $("route-list");
  list.replaceChildren();
  const sorted = [...routes.entries()].sort((a, b) =>
    a[1].short_name.localeCompare(b[1].short_name, undefined, { numeric: true }));
  for (const [id, r] of sorted) {
    const li = document.createElement("li");
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = r.enabled;
    box.dataset.route = id;
    box.addEventListener("change", () => setRouteEnabled(id, box.checked));
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = r.color;
    label.append(box, sw, document.createTextNode(" " + r.short_name));
    li.append(label);
    list.append(li);
  }
}

function setRouteEnabled(id, on) {
  const r = routes.get(id);
  if (!r) return;
  r.enabled = on;
  if (on) r.layer.addTo(routeLayer);
  else routeLayer.removeLayer(r.layer);
  scheduleResubscribe();
}
function setAllRoutes(on) {
  for (const [id, r] of routes) {
    r.enabled = on;
    if (on) r.layer.addTo(routeLayer);
    else routeLayer.removeLayer(r.layer);
  }
  renderLegend();
  scheduleResubscribe();
}
$("all-routes").addEventListener("click", () => setAllRoutes(true));
$("no-routes").addEventListener("click", () => setAllRoutes(false));

// The filter sent to the gateway: null means every route.
function routeFilter() {
  const enabled = [...routes.entries()].filter(([, r]) => r.enabled).map(([id]) => id);
  if (routes.size === 0 || enabled.length === routes.size) return null;
  return enabled;
}

// ---------------------------------------------------------------- buses
function busIcon(color, bearing) {
  const svg =
    `<svg viewBox="0 0 26 26" style="transform: rotate(${bearing || 0}deg)" aria-hidden="true">` +
    `<circle cx="13" cy="13" r="8" fill="${color}" stroke="#fff" stroke-width="2"/>` +
    `<path d="M13 1 L18 8 L8 8 Z" fill="${color}" stroke="#fff" stroke-width="1"/></svg>`;
  return L.divIcon({ className: "bus", html: svg, iconSize: [26, 26], iconAnchor: [13, 13] });
}

function position(v) {
  const lat = v.snapped_lat ?? v.lat;
  const lon = v.snapped_lon ?? v.lon;
  return [lat, lon];
}

function upsertBus(v) {
  const id = v.vehicle_id;
  if (!id) return;
  const to = position(v);
  if (!Number.isFinite(to[0]) || !Number.isFinite(to[1])) return;
  const color = "#" + (v.route_color || "555555");
  const now = performance.now();
  const b = buses.get(id);
  if (!b) {
    const marker = L.marker(to, { icon: busIcon(color, v.bearing_deg), keyboard: true, title: label(v), alt: label(v) });
    marker.bindPopup(() => popupContent(id), { className: "popup" });
    marker.addTo(busLayer);
    buses.set(id, { marker, from: to, to, t0: now, dur: 0, data: v, color, lastUpdate: now });
    return;
  }
  // Glide from wherever the marker is drawn now to the new fix, over roughly the update interval.
  b.from = b.marker.getLatLng() ? [b.marker.getLatLng().lat, b.marker.getLatLng().lng] : b.to;
  b.to = to;
  b.t0 = now;
  b.dur = Math.min(Math.max(now - b.lastUpdate, 300), 2500);
  b.lastUpdate = now;
  b.data = v;
  if (b.color !== color) {
    b.color = color;
    b.marker.setIcon(busIcon(color, v.bearing_deg));
  } else {
    const svg = b.marker.getElement()?.querySelector("svg");
    if (svg) svg.style.transform = `rotate(${v.bearing_deg || 0}deg)`;
  }
}

function removeBus(id) {
  const b = buses.get(id);
  if (!b) return;
  busLayer.removeLayer(b.marker);
  buses.delete(id);
}

function clearBuses() {
  busLayer.clearLayers();
  buses.clear();
}

function animate() {
  const now = performance.now();
  for (const b of buses.values()) {
    if (b.dur <= 0) continue;
    const t = Math.min(1, (now - b.t0) / b.dur);
    const lat = b.from[0] + (b.to[0] - b.from[0]) * t;
    const lon = b.from[1] + (b.to[1] - b.from[1]) * t;
    b.marker.setLatLng([lat, lon]);
    if (t >= 1) b.dur = 0;
  }
  requestAnimationFrame(animate);
}
requestAnimationFrame(animate);

function label(v) {
  return `Bus ${v.vehicle_id}${v.route_short_name ? " on route " + v.route_short_name : ""}`;
}

let openPopupId = null;
map.on("popupopen", (ev) => {
  for (const [id, b] of buses) if (b.marker.getPopup() === ev.popup) openPopupId = id;
});
map.on("popupclose", () => { openPopupId = null; });
function refreshOpenPopup() {
  if (!openPopupId) return;
  const b = buses.get(openPopupId);
  if (b && b.marker.isPopupOpen()) b.marker.setPopupContent(popupContent(openPopupId));
}

function popupContent(id) {
  const b = buses.get(id);
  const v = b ? b.data : {};
  const div = document.createElement("div");
  const h = document.createElement("strong");
  h.textContent = v.route_short_name ? `Route ${v.route_short_name}` : "Unassigned bus";
  const dl = document.createElement("dl");
  const age = v.ts ? Math.max(0, Math.round((Date.now() - v.ts) / 1000)) : null;
  const rows = [
    ["Vehicle", v.vehicle_id],
    ["Headsign", v.headsign],
    ["Speed", v.speed_mps != null ? `${(v.speed_mps * 3.6).toFixed(0)} km/h` : null],
    ["Status", v.status ? v.status.replace("_", " ") : null],
    ["Next stop", v.next_stop_id ? `${stopNames.get(v.next_stop_id) || v.next_stop_id}${v.next_stop_dist_m != null ? ` (${Math.round(v.next_stop_dist_m)} m)` : ""}` : null],
    ["Updated", age != null ? `${age} s ago` : null],
  ];
  for (const [k, val] of rows) {
    if (val == null || val === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(val);
    dl.append(dt, dd);
  }
  div.append(h, dl);
  return div;
}

// ---------------------------------------------------------------- density view
let densityCells = [];
function showDensity(d) {
  densityMode = true;
  $("mode").hidden = false;
  clearBuses();
  densityLayer.clearLayers();
  densityCells = d.cells || [];
  const max = Math.max(1, ...densityCells.map((c) => c.count || 0));
  for (const c of densityCells) {
    if (!Number.isFinite(c.lat) || !Number.isFinite(c.lon)) continue;
    L.circleMarker([c.lat, c.lon], {
      radius: 4 + 16 * Math.sqrt((c.count || 0) / max),
      color: "#b2182b", weight: 1, fillOpacity: 0.45,
    }).bindTooltip(`${c.count} buses`).addTo(densityLayer);
  }
}
function leaveDensity() {
  if (!densityMode) return;
  densityMode = false;
  $("mode").hidden = true;
  densityLayer.clearLayers();
  densityCells = [];
}
function densityTotal() {
  return densityCells.reduce((a, c) => a + (c.count || 0), 0);
}

// ---------------------------------------------------------------- stream handling
function handle(type, data) {
  countEvent();
  switch (type) {
    case "snapshot": {
      leaveDensity();
      const list = data.vehicles || [];
      const keep = new Set(list.map((v) => v.vehicle_id));
      // A snapshot (first, or after a reconnect) replaces everything: no ghosts survive it.
      for (const id of [...buses.keys()]) if (!keep.has(id)) removeBus(id);
      for (const v of list) upsertBus(v);
      break;
    }
    case "diff":
      // The answer to an in-place WebSocket re-subscribe: what left, what entered.
      leaveDensity();
      for (const id of data.removed || []) removeBus(id);
      for (const v of data.added || []) upsertBus(v);
      break;
    case "update":
      if (densityMode) leaveDensity();
      upsertBus(data.vehicle || data);
      break;
    case "remove":
      removeBus(data.vehicle_id);
      break;
    case "density":
      showDensity(data);
      break;
    case "error":
      console.warn("gateway error", data);
      break;
    default:
      break;
  }
}

function authHeaders() {
  return cfg.auth_token ? { Authorization: `Bearer ${cfg.auth_token}` } : {};
}

function viewport() {
  const b = map.getBounds();
  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
  const r = (x) => Number(x.toFixed(5));
  return [
    r(clamp(b.getWest(), -180, 180)), r(clamp(b.getSouth(), -90, 90)),
    r(clamp(b.getEast(), -180, 180)), r(clamp(b.getNorth(), -90, 90)),
  ];
}

let transport = null;
const useWs = cfg.transport === "ws" || (cfg.transport !== "sse" && "WebSocket" in window);

function streamUrl() {
  const params = new URLSearchParams({ bbox: viewport().join(",") });
  const f = routeFilter();
  if (f) params.set("routes", f.join(","));
  if (cfg.auth_token) params.set("access_token", cfg.auth_token);
  return `/v1/stream?${params}`;
}

function connectSse() {
  if (transport) transport.close();
  setConn("connecting", "connecting…");
  const es = new EventSource(streamUrl());
  es.onopen = () => setConn("live", "live (SSE)");
  es.onerror = () => setConn(es.readyState === EventSource.CLOSED ? "down" : "connecting", "reconnecting…");
  for (const type of ["snapshot", "update", "remove", "density", "diff", "error"]) {
    es.addEventListener(type, (ev) => {
      try { handle(type, JSON.parse(ev.data)); } catch (err) { console.warn("bad event", err); }
    });
  }
  transport = { close: () => es.close(), resubscribe: connectSse };
}

let wsBackoff = 500;
function connectWs() {
  setConn("connecting", "connecting…");
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const q = cfg.auth_token ? `?access_token=${encodeURIComponent(cfg.auth_token)}` : "";
  const ws = new WebSocket(`${proto}://${location.host}/v1/ws${q}`);
  let closedByUs = false;
  const subscribe = () => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const msg = { type: "subscribe", bbox: viewport() };
    const f = routeFilter();
    if (f) msg.routes = f;
    ws.send(JSON.stringify(msg));
  };
  ws.onopen = () => { wsBackoff = 500; setConn("live", "live (WebSocket)"); subscribe(); };
  ws.onmessage = (ev) => {
    try {
      const msg = JSON.parse(ev.data);
      handle(msg.type, msg.data ?? msg);
    } catch (err) { console.warn("bad message", err); }
  };
  ws.onclose = () => {
    if (closedByUs) return;
    setConn("down", "reconnecting…");
    // The gateway went away (restart, network): come back without a page reload.
    setTimeout(connectWs, wsBackoff);
    wsBackoff = Math.min(wsBackoff * 2, 5000);
  };
  transport = { close: () => { closedByUs = true; ws.close(); }, resubscribe: subscribe };
}

function connect() {
  if (useWs) connectWs();
  else connectSse();
}

// With every route switched off there is nothing to stream: pause until one is back on.
let paused = false;
let resubTimer = null;
function scheduleResubscribe() {
  clearTimeout(resubTimer);
  resubTimer = setTimeout(() => {
    const f = routeFilter();
    if (f && f.length === 0) {
      if (transport) transport.close();
      transport = null;
      paused = true;
      clearBuses();
      setConn("down", "no route selected");
      return;
    }
    if (paused || !transport) {
      paused = false;
      connect();
      return;
    }
    transport.resubscribe();
  }, 250);
}
map.on("moveend", scheduleResubscribe);

// Hooks for the browser tests: read-only views of what the page shows.
window.busflow = {
  vehicleCount: () => buses.size,
  vehicleIds: () => [...buses.keys()],
  positions: () => [...buses.entries()].map(([id, b]) => [id, b.marker.getLatLng().lat, b.marker.getLatLng().lng]),
  routeLayerCount: () => routes.size,
  connection: () => $("conn").dataset.state,
  densityMode: () => densityMode,
  map,
};

loadStops();
loadRoutes().finally(connect);
