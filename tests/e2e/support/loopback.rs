//! An axum app served on a loopback port from a runtime of its own, so a
//! test's blocking code can drive the `ebb` binary while it answers: the
//! delivery server, the warehouse fakes and the vendor fakes all run this
//! way. Dropping it stops serving without waiting for open connections.

use std::net::SocketAddr;

use axum::Router;
use tokio::runtime::Runtime;

pub struct Loopback {
    pub addr: SocketAddr,
    rt: Option<Runtime>,
}

impl Loopback {
    pub fn serve(app: Router) -> Loopback {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("building a test server's runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("local addr");
        rt.spawn(async move {
            axum::serve(listener, app).await.expect("serving");
        });
        Loopback { addr, rt: Some(rt) }
    }

    /// `127.0.0.1:PORT`, as `allow_hosts` grants it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`, a destination's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
