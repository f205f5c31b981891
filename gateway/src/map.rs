//! The live map page: plain HTML/CSS/JS embedded at compile time, no build toolchain.
//!
//! Leaflet comes from a pinned CDN URL with Subresource Integrity by default, or from a local copy
//! of Leaflet's `dist` folder (`--assets-dir`) for machines without internet access.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

/// Leaflet release the page is written against, and the SRI hashes of its files as published on
/// the npm registry (unpkg serves those same bytes).
const LEAFLET_VERSION: &str = "1.9.4";
const LEAFLET_JS_SRI: &str =
    "sha384-cxOPjt7s7Iz04uaHJceBmS+qpjv2JkIHNVcuOrM+YHwZOmJGBXI00mdUXEq65HTH";
const LEAFLET_CSS_SRI: &str =
    "sha384-sHL9NAb7lN7rfvG5lfHpm643Xkcjzp4jFvuavGOndn6pjVqS6ny56CAt3nsEVT4H";

/// Default tiles: OpenStreetMap's standard layer (fine for development; production users with
/// traffic should point `--tile-url` at their own tile server, per OSM's tile usage policy).
pub const DEFAULT_TILE_URL: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
/// Attribution required by OpenStreetMap's licence.
pub const DEFAULT_TILE_ATTRIBUTION: &str =
    "&copy; <a href=\"https://www.openstreetmap.org/copyright\">OpenStreetMap</a> contributors";

/// How the map page is served.
#[derive(Debug, Clone)]
pub struct MapConfig {
    /// Tile URL template with `{z}`, `{x}`, `{y}`.
    pub tile_url: String,
    /// Tile attribution (HTML).
    pub tile_attribution: String,
    /// Leaflet's `dist` folder to serve instead of the CDN.
    pub assets_dir: Option<PathBuf>,
    /// Initial view `[west, south, east, north]`, normally the network's bounding box.
    pub bounds: [f64; 4],
    /// `auto` (WebSocket where available, else SSE), `ws` or `sse`.
    pub transport: String,
}

impl Default for MapConfig {
    fn default() -> Self {
        MapConfig {
            tile_url: DEFAULT_TILE_URL.into(),
            tile_attribution: DEFAULT_TILE_ATTRIBUTION.into(),
            assets_dir: None,
            bounds: [145.6, -17.1, 145.9, -16.7],
            transport: "auto".into(),
        }
    }
}

#[derive(Serialize)]
struct PageConfig<'a> {
    tile_url: &'a str,
    tile_attribution: &'a str,
    bounds: [f64; 4],
    transport: &'a str,
}

#[derive(Debug)]
struct MapState {
    index: String,
    assets_dir: Option<PathBuf>,
}

/// Renders the page once: the config goes into a JSON script block (escaped so it cannot close
/// the tag), Leaflet tags point at the CDN or at the local copy.
fn render_index(config: &MapConfig) -> String {
    let page = PageConfig {
        tile_url: &config.tile_url,
        tile_attribution: &config.tile_attribution,
        bounds: config.bounds,
        transport: &config.transport,
    };
    let json = serde_json::to_string(&page)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let (css, js) = if config.assets_dir.is_some() {
        (
            r#"<link rel="stylesheet" href="/static/leaflet/leaflet.css">"#.to_string(),
            r#"<script src="/static/leaflet/leaflet.js"></script>"#.to_string(),
        )
    } else {
        let base = format!("https://unpkg.com/leaflet@{LEAFLET_VERSION}/dist");
        (
            format!(
                r#"<link rel="stylesheet" href="{base}/leaflet.css" integrity="{LEAFLET_CSS_SRI}" crossorigin="anonymous">"#
            ),
            format!(
                r#"<script src="{base}/leaflet.js" integrity="{LEAFLET_JS_SRI}" crossorigin="anonymous"></script>"#
            ),
        )
    };
    INDEX_HTML
        .replace("{{LEAFLET_CSS}}", &css)
        .replace("{{LEAFLET_JS}}", &js)
        .replace("{{CONFIG_JSON}}", &json)
}

/// Routes for `/` and `/static/*`. Merge into the gateway's router.
pub fn router<S: Clone + Send + Sync + 'static>(config: &MapConfig) -> Router<S> {
    let state =
        Arc::new(MapState { index: render_index(config), assets_dir: config.assets_dir.clone() });
    Router::new()
        .route("/", get(index))
        .route("/static/app.js", get(|| async { text("text/javascript; charset=utf-8", APP_JS) }))
        .route("/static/style.css", get(|| async { text("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/static/leaflet/{*file}", get(leaflet_asset))
        // Browsers ask for it on every page load; no icon is better than a logged 404.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(state)
}

async fn index(State(state): State<Arc<MapState>>) -> Html<String> {
    Html(state.index.clone())
}

fn text(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

/// Only Leaflet's own files: `leaflet.js`, `leaflet.css`, `images/<name>.png|svg`. Anything else
/// (including `..`) is a 404, so the directory cannot be used to read other files.
fn asset_path(file: &str) -> Option<(&'static str, PathBuf)> {
    let safe_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    match file.split('/').collect::<Vec<_>>().as_slice() {
        ["leaflet.js"] => Some(("text/javascript; charset=utf-8", PathBuf::from("leaflet.js"))),
        ["leaflet.css"] => Some(("text/css; charset=utf-8", PathBuf::from("leaflet.css"))),
        ["images", name] if safe_name(name) => {
            let ct = if name.ends_with(".png") {
                "image/png"
            } else if name.ends_with(".svg") {
                "image/svg+xml"
            } else {
                return None;
            };
            Some((ct, PathBuf::from("images").join(name)))
        }
        _ => None,
    }
}

async fn leaflet_asset(State(state): State<Arc<MapState>>, Path(file): Path<String>) -> Response {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            r#"{"error":"not_found","detail":"no such map asset"}"#,
        )
            .into_response()
    };
    let (Some(dir), Some((ct, rel))) = (state.assets_dir.as_ref(), asset_path(&file)) else {
        return not_found();
    };
    match tokio::fs::read(dir.join(&rel)).await {
        Ok(bytes) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(ct))], bytes).into_response()
        }
        Err(e) => {
            tracing::warn!(file = %dir.join(&rel).display(), "map asset unavailable: {e}");
            not_found()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdn_page_pins_leaflet_with_sri() {
        let html = render_index(&MapConfig::default());
        assert!(html.contains("unpkg.com/leaflet@1.9.4/dist/leaflet.js"));
        assert!(html.contains(LEAFLET_JS_SRI) && html.contains(LEAFLET_CSS_SRI));
        assert!(!html.contains("{{"), "unfilled placeholder");
    }

    #[test]
    fn local_assets_replace_the_cdn() {
        let cfg = MapConfig { assets_dir: Some(PathBuf::from("/x")), ..MapConfig::default() };
        let html = render_index(&cfg);
        assert!(html.contains("/static/leaflet/leaflet.js"));
        assert!(!html.contains("unpkg.com"));
    }

    #[test]
    fn config_cannot_break_out_of_its_script_tag() {
        let cfg = MapConfig {
            tile_url: "</script><script>alert(1)</script>".into(),
            ..MapConfig::default()
        };
        let html = render_index(&cfg);
        assert!(!html.contains("</script><script>alert(1)"));
    }

    #[test]
    fn only_leaflet_files_are_served() {
        assert!(asset_path("leaflet.js").is_some());
        assert!(asset_path("images/marker-icon.png").is_some());
        assert!(asset_path("../Cargo.toml").is_none());
        assert!(asset_path("images/../../etc/passwd").is_none());
        assert!(asset_path("images/.hidden.png").is_none());
        assert!(asset_path("leaflet-src.js").is_none());
    }
}
