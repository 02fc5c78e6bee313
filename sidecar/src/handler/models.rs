//! `GET /v1/models` and `GET /v1/models/{id}`.

use http::StatusCode;

use super::json_response;
use crate::App;
use crate::api::models;
use crate::error::ProxyError;
use crate::stream::body::ProxyBody;

pub fn list(app: &App) -> Result<http::Response<ProxyBody>, ProxyError> {
    let table = app.table().ok_or(ProxyError::NotReady)?;
    Ok(json_response(StatusCode::OK, models::list(table.aliases())))
}

pub fn one(app: &App, id: &str) -> Result<http::Response<ProxyBody>, ProxyError> {
    let table = app.table().ok_or(ProxyError::NotReady)?;
    let route = table.route(id)?;
    Ok(json_response(StatusCode::OK, models::one(&route.alias)))
}
