//! Responses the simulator created with `store` (the default): `GET /v1/responses/{id}`
//! (the final response object), `DELETE /v1/responses/{id}`, `GET
//! /v1/responses/{id}/input_items` (the input as items, newest first by default, paged
//! by `limit`, `after` and `order`) and `POST /v1/responses/{id}/cancel` (400: only
//! background responses can be cancelled, and the simulator answers none in the
//! background). The newest [`CAPACITY`] are kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use super::body::Reply;
use super::error::ApiError;
use super::files;

/// Most responses remembered.
pub const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub struct ResponseStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Stored>,
    order: VecDeque<String>,
}

#[derive(Debug)]
struct Stored {
    response: Bytes,
    input: Vec<Value>,
}

impl ResponseStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a created response and its input items.
    pub fn save(&self, id: &str, response: Bytes, input: Vec<Value>) {
        let mut inner = self.lock();
        if inner.order.len() >= CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.by_id.remove(&old);
            }
        }
        inner.order.push_back(id.to_owned());
        inner
            .by_id
            .insert(id.to_owned(), Stored { response, input });
    }
}

pub enum ResponseRoute<'a> {
    Get(&'a str),
    Delete(&'a str),
    InputItems(&'a str),
    Cancel(&'a str),
}

/// The route of a path below `/v1/responses/`, if it is one.
pub fn route<'a>(method: &Method, path: &'a str) -> Option<Result<ResponseRoute<'a>, ApiError>> {
    let rest = path.strip_prefix("/v1/responses/")?;
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() {
        return Some(Err(ApiError::not_found(method, path)));
    }
    let routed = match (tail, method) {
        ("", &Method::GET) => ResponseRoute::Get(id),
        ("", &Method::DELETE) => ResponseRoute::Delete(id),
        ("input_items", &Method::GET) => ResponseRoute::InputItems(id),
        ("cancel", &Method::POST) => ResponseRoute::Cancel(id),
        ("" | "input_items" | "cancel", _) => {
            return Some(Err(ApiError::method_not_allowed(method, path)));
        }
        _ => return Some(Err(ApiError::not_found(method, path))),
    };
    Some(Ok(routed))
}

fn no_such(id: &str) -> ApiError {
    ApiError::no_such(format!("Response with id '{id}' not found."), "response_id")
}

pub fn handle(
    store: &ResponseStore,
    route: ResponseRoute<'_>,
    query: Option<&str>,
) -> Result<Reply, ApiError> {
    let mut inner = store.lock();
    match route {
        ResponseRoute::Get(id) => {
            let s = inner.by_id.get(id).ok_or_else(|| no_such(id))?;
            Ok(Reply::Json(s.response.clone()))
        }
        ResponseRoute::Delete(id) => {
            inner.by_id.remove(id).ok_or_else(|| no_such(id))?;
            inner.order.retain(|k| k != id);
            Reply::json(&json!({"id": id, "object": "response", "deleted": true}))
        }
        ResponseRoute::Cancel(id) => {
            inner.by_id.get(id).ok_or_else(|| no_such(id))?;
            Err(ApiError::invalid(
                "Cannot cancel a response that was not created with background=true.",
                None,
                None,
            ))
        }
        ResponseRoute::InputItems(id) => {
            let s = inner.by_id.get(id).ok_or_else(|| no_such(id))?;
            let params = files::query_params(query);
            let limit = files::limit_param(&params, 1..=100, 20)?;
            let value = |k: &str| {
                params
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.as_str())
            };
            let mut items = s.input.clone();
            match value("order") {
                None | Some("desc") => items.reverse(),
                Some("asc") => {}
                Some(other) => {
                    return Err(ApiError::invalid(
                        format!("Invalid 'order': expected 'asc' or 'desc', got '{other}'."),
                        Some("order"),
                        Some("invalid_value"),
                    ));
                }
            }
            files::page(
                &items,
                |v| v["id"].as_str().unwrap_or(""),
                value("after"),
                limit,
            )
        }
    }
}

/// A request's `input` as the items a Response lists: a string is one user message; each
/// item gets an id and a status, and a message's string content becomes `input_text`.
pub fn input_items(input: Option<&Value>, seq: u64) -> Vec<Value> {
    let items: Vec<Value> = match input {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(list)) => list.clone(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if let Some(obj) = item.as_object_mut() {
                obj.entry("type").or_insert_with(|| json!("message"));
                obj.entry("id")
                    .or_insert_with(|| json!(format!("msg_sim{seq}_in{i}")));
                obj.entry("status").or_insert_with(|| json!("completed"));
                if let Some(Value::String(text)) = obj.get("content") {
                    let text = text.clone();
                    obj.insert(
                        "content".into(),
                        json!([{"type": "input_text", "text": text}]),
                    );
                }
            }
            item
        })
        .collect()
}
