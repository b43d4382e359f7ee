//! The test platform's HTTP helpers: requests to its API servers, and the
//! steps most tests take (register, log in, upload, execute).

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Platform;

impl Platform {
    /// Any request; the answer's status and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        self.send_to(&self.url(""), method, path, token, body).await
    }

    /// Any request to the API server at `base`.
    pub async fn send_to(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text:?}"));
        (status, json)
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            token,
            Some(("application/json", serde_json::to_vec(body).unwrap())),
        )
        .await
    }

    pub async fn post_json_to(
        &self,
        base: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let body = Some(("application/json", serde_json::to_vec(body).unwrap()));
        self.send_to(base, reqwest::Method::POST, path, token, body)
            .await
    }

    pub async fn get_from(
        &self,
        base: &str,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        self.send_to(base, reqwest::Method::GET, path, token, None)
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    /// Register `name` and log in; returns the token.
    pub async fn user(&self, name: &str) -> String {
        let credentials = json!({"username": name, "password": "password123"});
        let (status, body) = self.post_json("/auth/register", None, &credentials).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.login(name, "password123").await
    }

    pub async fn login(&self, name: &str, password: &str) -> String {
        let (status, body) = self
            .post_json(
                "/auth/login",
                None,
                &json!({"username": name, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Upload WAT (with optional limits); returns the id.
    pub async fn upload(&self, token: &str, wat: &str, limits: Option<Value>) -> u64 {
        let mut body = json!({"code": wat});
        if let Some(limits) = limits {
            body["limits"] = limits;
        }
        let (status, body) = self.post_json("/functions", Some(token), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_u64().expect("numeric id")
    }

    pub async fn execute(&self, token: &str, id: u64, input: Value) -> (StatusCode, Value) {
        self.post_json(
            &format!("/functions/{id}/execute"),
            Some(token),
            &json!({"input": input}),
        )
        .await
    }
}
