//! The HTTP API of `ebb serve`, and the dashboard on top of it. Handlers
//! carry their own OpenAPI annotations, and `/openapi.json` is generated
//! from them, so the document cannot drift from what the server does. Every
//! endpoint but `/health` wants `Authorization: Bearer <[server] api_token>`.
//! The dashboard (`/`) is one static page without data of its own: it asks
//! for the token and reads everything through the API, so it needs no build
//! step and no session of its own.

mod error;
mod process;
mod syncs;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use tower_http::compression::CompressionLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use error::ApiError;
pub use error::ErrorBody;

use crate::worker::Worker;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ebb",
        description = "Run, watch and repair Ebb's syncs. Every endpoint but /health wants `Authorization: Bearer <token>`."
    ),
    modifiers(&Bearer),
    security(("bearer" = [])),
    components(schemas(ErrorBody))
)]
struct Spec;

/// The bearer scheme every operation refers to.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API's routes with authentication, JSON errors for what no route
/// takes, and `/openapi.json`.
pub fn router(worker: Arc<Worker>, token: String) -> Router {
    let (routes, spec) = OpenApiRouter::with_openapi(Spec::openapi())
        .routes(routes!(process::health))
        .routes(routes!(process::metrics))
        .routes(routes!(syncs::list))
        .routes(routes!(syncs::get))
        .routes(routes!(syncs::trigger, syncs::runs))
        .routes(routes!(syncs::run))
        .routes(routes!(syncs::replay))
        .routes(routes!(syncs::errors))
        .routes(routes!(syncs::error_groups))
        .routes(routes!(syncs::reset))
        .routes(routes!(syncs::enable))
        .routes(routes!(syncs::disable))
        .routes(routes!(syncs::plan))
        .routes(routes!(syncs::preview))
        .with_state(worker)
        .split_for_parts();
    let spec = Arc::new(spec);
    let expected: [u8; 32] = Sha256::digest(format!("Bearer {token}")).into();
    routes
        .route("/", axum::routing::get(dashboard))
        .route("/favicon.ico", axum::routing::get(favicon))
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { Json(spec.as_ref().clone()) }),
        )
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            authenticate(expected, req, next)
        }))
        .layer(CompressionLayer::new())
}

/// The dashboard page.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

/// The dashboard's icon (what browsers ask for on their own): a wave, as SVG.
async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M1 10c2-3 4-3 7 0s5 3 7 0" fill="none" stroke="#2563eb" stroke-width="2"/></svg>"##,
    )
}

/// Lets `/health`, the dashboard's page and its icon through and everything else only with the token. The
/// header is compared by digest, so the time taken says nothing about it.
async fn authenticate(expected: [u8; 32], req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/health" | "/" | "/favicon.ico") {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| <[u8; 32]>::from(Sha256::digest(v.as_bytes())));
    if given == Some(expected) {
        return next.run(req).await;
    }
    let refused = ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send `Authorization: Bearer <token>` with the token in [server] api_token",
    );
    let mut response = refused.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}
