//! A loopback HTTP receiver (of reports, of Alertmanager's webhook notifications).

/// A loopback receiver: answers `code` (changeable; 500 at first), keeps every body and
/// when it came.
pub struct Receiver {
    pub url: String,
    pub code: std::sync::Arc<std::sync::atomic::AtomicU16>,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    pub arrived: std::sync::Arc<std::sync::Mutex<Vec<std::time::SystemTime>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        use std::sync::atomic::{AtomicU16, Ordering};
        let code = std::sync::Arc::new(AtomicU16::new(500));
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let arrived = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, b, t) = (code.clone(), bodies.clone(), arrived.clone());
        let app = axum::Router::new().route(
            "/in",
            axum::routing::post(move |body: String| {
                let (c, b, t) = (c.clone(), b.clone(), t.clone());
                async move {
                    t.lock().unwrap().push(std::time::SystemTime::now());
                    b.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap_or_default());
                    axum::http::StatusCode::from_u16(c.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            code,
            bodies,
            arrived,
        }
    }
}
