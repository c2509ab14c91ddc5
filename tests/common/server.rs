//! A real HTTP server on an ephemeral 127.0.0.1 port around a router, counting
//! the request-body bytes the server's handlers consumed, and a one-request
//! HTTP/1.1 client (a fresh connection per request).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A request body that counts the data bytes read from it.
pub struct Counting {
    inner: Body,
    read: Arc<AtomicU64>,
}

impl http_body::Body for Counting {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.read.fetch_add(data.len() as u64, Ordering::SeqCst);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A server under test.
pub struct Server {
    pub addr: SocketAddr,
    /// Request-body bytes the routes read, over every request.
    pub consumed: Arc<AtomicU64>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Serves `router` (its request bodies counted) until [`Server::stop`].
pub async fn serve(router: Router) -> Server {
    let consumed = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&consumed);
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |request: Request<Body>| {
            let read = Arc::clone(&counter);
            request.map(|inner| Body::new(Counting { inner, read }))
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await
            .unwrap();
    });
    Server {
        addr,
        consumed,
        shutdown: Some(shutdown),
        task,
    }
}

impl Server {
    /// Stops accepting and waits until every request in flight is answered.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await.unwrap();
    }

    /// Request-body bytes read so far.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::SeqCst)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends one request on a new connection and reads the whole answer.
pub async fn send<B>(addr: SocketAddr, request: Request<B>) -> Result<Answer, hyper::Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A request to `path` with these headers and a body known in advance
/// (`Content-Length` set).
pub fn request(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request.body(Full::new(body.into())).unwrap()
}

/// POSTs `body` to `path` with `headers`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Answer {
    send(addr, request("POST", path, headers, body))
        .await
        .expect("an answer")
}

/// Uploads a body of `total` bytes in 64 KiB chunks over a raw connection
/// (chunked transfer encoding unless `content_length`), while reading the
/// answer: a server may answer (413) and close before the upload ends, and
/// the answer must be read even when the upload then fails, as a provider's
/// HTTP client reads it. Returns the status, the body text and how many body
/// bytes the upload wrote before it stopped.
pub async fn upload(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    total: usize,
    content_length: bool,
) -> (u16, String, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&if content_length {
        format!("Content-Length: {total}\r\n\r\n")
    } else {
        "Transfer-Encoding: chunked\r\n\r\n".to_owned()
    });
    let written = Arc::new(AtomicU64::new(0));
    let upload = {
        let written = Arc::clone(&written);
        tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let len = left.min(chunk.len());
                if content_length {
                    writer.write_all(&chunk[..len]).await?;
                } else {
                    writer.write_all(format!("{len:x}\r\n").as_bytes()).await?;
                    writer.write_all(&chunk[..len]).await?;
                    writer.write_all(b"\r\n").await?;
                }
                written.fetch_add(len as u64, Ordering::SeqCst);
                left -= len;
            }
            if !content_length {
                writer.write_all(b"0\r\n\r\n").await?;
            }
            Ok::<_, std::io::Error>(())
        })
    };
    let mut answer = Vec::new();
    // The server closes after answering; a reset after the answer is fine.
    let mut buffer = [0u8; 4096];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    upload.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body, written.load(Ordering::SeqCst))
}
