//! A TCP proxy in front of a real server, with a switch that cuts every
//! connection and refuses new ones, and restores service later. Lets a test
//! take a store's server away without touching the machine's shared server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A proxy listening on `127.0.0.1:<port>` and forwarding to `target`.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// Whether the proxy serves, and the tasks to abort on a cut.
#[derive(Debug, Default)]
struct State {
    open: bool,
    tasks: Vec<AbortHandle>,
}

impl State {
    /// Keeps `task` for the next cut, or aborts it now if the proxy was cut
    /// while it started.
    fn track(&mut self, task: AbortHandle) {
        if self.open {
            self.tasks.push(task);
        } else {
            task.abort();
        }
    }
}

impl Proxy {
    /// Starts forwarding to `target` from a fresh local port.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let proxy = Proxy {
            addr,
            target,
            state: Arc::new(Mutex::new(State::default())),
        };
        proxy.serve(listener);
        proxy
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and closes the port, so new connections
    /// are refused, until [`Proxy::restore`].
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("proxy state");
        state.open = false;
        for task in state.tasks.drain(..) {
            task.abort();
        }
    }

    /// Listens on the same port again (retrying while the old listener is
    /// still being dropped).
    pub async fn restore(&self) {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("could not listen on {} again", self.addr);
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target;
        let state = Arc::clone(&self.state);
        self.state.lock().expect("proxy state").open = true;
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let forward = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                state
                    .lock()
                    .expect("proxy state")
                    .track(forward.abort_handle());
            }
        });
        self.state
            .lock()
            .expect("proxy state")
            .track(accept.abort_handle());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A local port nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a probe port");
    listener.local_addr().expect("probe address")
}
