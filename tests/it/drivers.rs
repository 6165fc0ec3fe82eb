//! The protocol drivers against real peers: REST and SOAP against mock HTTP servers started on
//! 127.0.0.1 in each test, AMQP against the RabbitMQ that `TONGBAN_TEST_AMQP_URL` names
//! (skipped loudly without it locally, a failure without it in CI).

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tongban::adapters::amqp::AmqpDriver;
use tongban::adapters::rest::RestDriver;
use tongban::adapters::soap::SoapDriver;
use tongban::adapters::{Adapter, DeliveryError, Outgoing};
use tongban::mapping::SoapVersion;
use tongban::mapping::xml::{SOAP11_NS, SOAP12_NS};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A request the mock server got.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A mock system answering every POST to `/` with `status`, `headers` and `body`, and keeping
/// what it was sent.
async fn mock(
    status: u16,
    headers: &[(&'static str, &str)],
    body: impl Into<Vec<u8>>,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer_headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let answer_body: Vec<u8> = body.into();
    let log = seen.clone();
    let app = Router::new().route(
        "/",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            let answer_headers = answer_headers.clone();
            let answer_body = answer_body.clone();
            async move {
                log.lock().unwrap().push(Seen {
                    headers,
                    body: body.to_vec(),
                });
                let mut response: Response =
                    (StatusCode::from_u16(status).unwrap(), answer_body).into_response();
                for (name, value) in answer_headers {
                    response.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        value.parse().unwrap(),
                    );
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A port nothing listens on: bound, then let go.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A server that accepts connections and never answers.
async fn hanging_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

fn json_message() -> Outgoing<'static> {
    Outgoing {
        application_id: "app-0001",
        body: br#"{"name":"personal data"}"#,
        content_type: "application/json",
        assertion: Some("signed.assertion.token"),
        traceparent: None,
    }
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", seen.headers))
        .to_str()
        .unwrap()
}

fn rest(url: &str) -> RestDriver {
    RestDriver::new(
        url.to_string(),
        vec![("X-Department-Key".into(), "k-123".into())],
        TIMEOUT,
    )
    .unwrap()
}

fn assert_no_body_in(err: &DeliveryError) {
    assert!(
        !err.to_string().contains("personal data"),
        "the message body leaked into `{err}`"
    );
}

// ---------------------------------------------------------------------------------------- REST

#[tokio::test]
async fn rest_success_sends_the_headers_and_body() {
    let (url, seen) = mock(201, &[], "created").await;
    let delivered = rest(&url).deliver(&json_message()).await.unwrap();
    assert_eq!(delivered.status, Some(201));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(header(request, "idempotency-key"), "app-0001");
    assert_eq!(header(request, "content-type"), "application/json");
    assert_eq!(header(request, "x-department-key"), "k-123");
    assert_eq!(
        header(request, "tongban-assertion"),
        "signed.assertion.token"
    );
    assert_eq!(request.body, json_message().body);
}

#[tokio::test]
async fn rest_without_assertion_sends_no_assertion_header() {
    let (url, seen) = mock(200, &[], "").await;
    let msg = Outgoing {
        assertion: None,
        traceparent: None,
        ..json_message()
    };
    rest(&url).deliver(&msg).await.unwrap();
    assert!(
        seen.lock().unwrap()[0]
            .headers
            .get("tongban-assertion")
            .is_none()
    );
}

/// A system that looks for the assertion in a header of its own name gets it there (and in
/// the hub's own), configured as `headers = { "X-Sso-Token" = "{assertion}" }`; without an
/// assertion neither is sent, and the placeholder itself never is.
#[tokio::test]
async fn the_assertion_goes_in_a_header_of_the_systems_own_name_too() {
    let (url, seen) = mock(200, &[], "").await;
    let driver = RestDriver::new(
        url.to_string(),
        vec![
            ("X-Sso-Token".into(), "{assertion}".into()),
            ("X-Department-Key".into(), "k-123".into()),
        ],
        TIMEOUT,
    )
    .unwrap();
    driver.deliver(&json_message()).await.unwrap();
    let without = Outgoing {
        assertion: None,
        traceparent: None,
        ..json_message()
    };
    driver.deliver(&without).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(header(&seen[0], "x-sso-token"), "signed.assertion.token");
    assert_eq!(
        header(&seen[0], "tongban-assertion"),
        "signed.assertion.token"
    );
    assert_eq!(header(&seen[0], "x-department-key"), "k-123");
    assert!(seen[1].headers.get("x-sso-token").is_none());
    assert!(seen[1].headers.get("tongban-assertion").is_none());
}

#[tokio::test]
async fn rest_reuses_one_client_for_many_deliveries() {
    let (url, seen) = mock(204, &[], "").await;
    let driver = rest(&url);
    for _ in 0..5 {
        assert_eq!(
            driver.deliver(&json_message()).await.unwrap().status,
            Some(204)
        );
    }
    assert_eq!(seen.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn rest_500_is_retryable() {
    let (url, _) = mock(500, &[], "database down").await;
    let err = rest(&url).deliver(&json_message()).await.unwrap_err();
    match &err {
        DeliveryError::Retryable {
            status,
            retry_after,
            ..
        } => {
            assert_eq!(*status, Some(500));
            assert_eq!(*retry_after, None);
        }
        other => panic!("expected Retryable, got {other:?}"),
    }
    assert!(err.to_string().contains("500"), "{err}");
}

#[tokio::test]
async fn rest_429_honours_retry_after() {
    let (url, _) = mock(429, &[("retry-after", "7")], "slow down").await;
    let err = rest(&url).deliver(&json_message()).await.unwrap_err();
    assert_eq!(
        err,
        DeliveryError::Retryable {
            reason: "HTTP 429 Too Many Requests: slow down".into(),
            retry_after: Some(Duration::from_secs(7)),
            status: Some(429),
        }
    );
}

#[tokio::test]
async fn rest_503_with_a_date_honours_retry_after() {
    let at = chrono::Utc::now() + chrono::Duration::seconds(120);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let (url, _) = mock(503, &[("retry-after", &date)], "").await;
    match rest(&url).deliver(&json_message()).await.unwrap_err() {
        DeliveryError::Retryable {
            retry_after: Some(wait),
            status: Some(503),
            ..
        } => assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        ),
        other => panic!("expected Retryable with retry_after, got {other:?}"),
    }
}

#[tokio::test]
async fn rest_408_is_retryable() {
    let (url, _) = mock(408, &[], "").await;
    let err = rest(&url).deliver(&json_message()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn rest_400_is_permanent_with_status_and_a_clean_short_excerpt() {
    let body = format!("invalid\x1b[0m field\r\n{}", "y".repeat(1000));
    let (url, _) = mock(400, &[], body).await;
    let err = rest(&url).deliver(&json_message()).await.unwrap_err();
    let DeliveryError::Permanent { reason, status } = &err else {
        panic!("expected Permanent, got {err:?}");
    };
    assert_eq!(*status, Some(400));
    assert!(
        reason.starts_with("HTTP 400 Bad Request: invalid[0m field yyy"),
        "{reason}"
    );
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
    assert!(
        reason.chars().count() <= "HTTP 400 Bad Request: ".len() + 201,
        "{reason}"
    );
    assert_no_body_in(&err);
}

#[tokio::test]
async fn rest_connection_refused_is_retryable() {
    let url = format!("http://127.0.0.1:{}/", dead_port());
    let started = Instant::now();
    let err = rest(&url).deliver(&json_message()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_no_body_in(&err);
}

#[tokio::test]
async fn rest_hanging_server_is_retryable_within_the_timeout() {
    let url = hanging_server().await;
    let timeout = Duration::from_millis(300);
    let driver = RestDriver::new(url, vec![], timeout).unwrap();
    let started = Instant::now();
    let err = driver.deliver(&json_message()).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(err.to_string().contains("300 ms"), "{err}");
}

#[tokio::test]
async fn rest_https_to_a_plain_http_server_is_retryable() {
    // The TLS handshake meets plain HTTP: a transport error, not an answer.
    let (url, seen) = mock(200, &[], "").await;
    let url = url.replacen("http://", "https://", 1);
    let err = rest(&url).deliver(&json_message()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(seen.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------- SOAP

const ENVELOPE: &[u8] = "<?xml version=\"1.0\" encoding=\"GB18030\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><申请/></s:Body></s:Envelope>".as_bytes();

fn soap_message() -> Outgoing<'static> {
    Outgoing {
        application_id: "app-0002",
        body: ENVELOPE,
        content_type: "text/xml; charset=GB18030",
        assertion: Some("signed.assertion.token"),
        traceparent: None,
    }
}

fn soap(url: &str, version: SoapVersion, action: Option<&str>) -> SoapDriver {
    SoapDriver::new(
        url.to_string(),
        version,
        action.map(str::to_string),
        vec![("X-Department-Key".into(), "k-123".into())],
        TIMEOUT,
    )
    .unwrap()
}

fn fault11(code: &str, reason: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body><soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{reason}</faultstring></soap:Fault></soap:Body></soap:Envelope>"#
    )
}

fn fault12(code: &str, reason: &str) -> String {
    format!(
        r#"<env:Envelope xmlns:env="{SOAP12_NS}"><env:Body><env:Fault><env:Code><env:Value>env:{code}</env:Value></env:Code><env:Reason><env:Text xml:lang="zh">{reason}</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#
    )
}

#[tokio::test]
async fn soap11_success_sends_soapaction_and_charset() {
    let ok = format!(
        r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><回执>OK</回执></s:Body></s:Envelope>"#
    );
    let (url, seen) = mock(200, &[("content-type", "text/xml; charset=utf-8")], ok).await;
    let delivered = soap(&url, SoapVersion::V11, Some("urn:submit"))
        .deliver(&soap_message())
        .await
        .unwrap();
    assert_eq!(delivered.status, Some(200));
    let seen = seen.lock().unwrap();
    let request = &seen[0];
    assert_eq!(header(request, "soapaction"), "\"urn:submit\"");
    assert_eq!(header(request, "content-type"), "text/xml; charset=GB18030");
    assert_eq!(header(request, "idempotency-key"), "app-0002");
    assert_eq!(header(request, "x-department-key"), "k-123");
    assert_eq!(
        header(request, "tongban-assertion"),
        "signed.assertion.token"
    );
    assert_eq!(request.body, ENVELOPE);
}

#[tokio::test]
async fn soap11_without_action_sends_an_empty_soapaction() {
    let (url, seen) = mock(200, &[], "").await;
    soap(&url, SoapVersion::V11, None)
        .deliver(&soap_message())
        .await
        .unwrap();
    assert_eq!(header(&seen.lock().unwrap()[0], "soapaction"), "\"\"");
}

#[tokio::test]
async fn soap12_success_sends_the_action_parameter() {
    let (url, seen) = mock(202, &[], "").await;
    let delivered = soap(&url, SoapVersion::V12, Some("urn:submit"))
        .deliver(&soap_message())
        .await
        .unwrap();
    assert_eq!(delivered.status, Some(202));
    let seen = seen.lock().unwrap();
    let request = &seen[0];
    assert_eq!(
        header(request, "content-type"),
        "application/soap+xml; charset=GB18030; action=\"urn:submit\""
    );
    assert!(request.headers.get("soapaction").is_none());
}

#[tokio::test]
async fn soap12_message_without_charset_is_sent_as_utf8() {
    let (url, seen) = mock(200, &[], "").await;
    let msg = Outgoing {
        content_type: "application/soap+xml",
        ..soap_message()
    };
    soap(&url, SoapVersion::V12, None)
        .deliver(&msg)
        .await
        .unwrap();
    assert_eq!(
        header(&seen.lock().unwrap()[0], "content-type"),
        "application/soap+xml; charset=utf-8"
    );
}

#[tokio::test]
async fn soap_client_fault_is_permanent() {
    let (url, _) = mock(
        500,
        &[("content-type", "text/xml")],
        fault11("Client", "证件号码格式错误"),
    )
    .await;
    let err = soap(&url, SoapVersion::V11, Some("urn:submit"))
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::Permanent {
            reason: "SOAP fault soap:Client: 证件号码格式错误".into(),
            status: Some(500),
        }
    );
}

#[tokio::test]
async fn soap_server_fault_is_retryable() {
    let (url, _) = mock(500, &[], fault11("Server", "backend unavailable")).await;
    let err = soap(&url, SoapVersion::V11, None)
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::Retryable {
            reason: "SOAP fault soap:Server: backend unavailable".into(),
            retry_after: None,
            status: Some(500),
        }
    );
}

#[tokio::test]
async fn soap12_sender_and_receiver_faults() {
    let (url, _) = mock(400, &[], fault12("Sender", "bad request")).await;
    let err = soap(&url, SoapVersion::V12, None)
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Permanent {
                status: Some(400),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "SOAP fault env:Sender: bad request");

    let (url, _) = mock(500, &[], fault12("Receiver", "try later")).await;
    let err = soap(&url, SoapVersion::V12, None)
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Retryable {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn soap_fault_in_a_200_still_counts() {
    let (url, _) = mock(200, &[], fault11("Client", "rejected")).await;
    let err = soap(&url, SoapVersion::V11, None)
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Permanent {
                status: Some(200),
                ..
            }
        ),
        "{err:?}"
    );
}

/// A 2xx whose body is not a SOAP envelope is not the system's acknowledgement (a gateway's
/// page, a proxy's text): it is retried, never recorded as delivered. An empty 2xx is a one-way
/// operation's answer and counts.
#[tokio::test]
async fn soap_2xx_with_a_garbage_body_is_retried_not_delivered() {
    for body in [
        b"\x00\xffnot <xml at all".to_vec(),
        b"<html><body>502 Bad Gateway</body></html>".to_vec(),
    ] {
        let (url, _) = mock(200, &[], body.clone()).await;
        let err = soap(&url, SoapVersion::V11, None)
            .deliver(&soap_message())
            .await
            .expect_err("not an acknowledgement");
        assert!(
            matches!(
                &err,
                DeliveryError::Retryable {
                    status: Some(200),
                    ..
                }
            ) && err.to_string().contains("not a SOAP envelope"),
            "{err:?}"
        );
    }
    let (url, _) = mock(202, &[], Vec::new()).await;
    let delivered = soap(&url, SoapVersion::V11, None)
        .deliver(&soap_message())
        .await
        .unwrap();
    assert_eq!(delivered.status, Some(202));
}

#[tokio::test]
async fn soap_non_2xx_without_a_fault_is_classified_like_rest() {
    let (url, _) = mock(404, &[], "<html>not found</html>").await;
    let err = soap(&url, SoapVersion::V11, None)
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Permanent {
                status: Some(404),
                ..
            }
        ),
        "{err:?}"
    );

    let (url, _) = mock(503, &[("retry-after", "3")], "maintenance").await;
    let err = soap(&url, SoapVersion::V11, None)
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Retryable {
                status: Some(503),
                retry_after: Some(d),
                ..
            } if d == Duration::from_secs(3)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn soap_huge_answer_is_read_bounded() {
    // 3 MiB of nested elements: neither read whole nor parsed.
    let (url, _) = mock(500, &[], "<a>".repeat(1024 * 1024)).await;
    let err = soap(&url, SoapVersion::V11, None)
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Retryable {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().len() < 400, "{err}");
}

#[tokio::test]
async fn soap_connection_refused_is_retryable() {
    let url = format!("http://127.0.0.1:{}/ws", dead_port());
    let err = soap(&url, SoapVersion::V12, None)
        .deliver(&soap_message())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

// ---------------------------------------------------------------------------------------- AMQP

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

mod broker {
    use lapin::options::{
        BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

    /// A test exchange, declared as the driver declares it, bound to a server-named temporary
    /// queue.
    pub struct TestQueue {
        pub connection: Connection,
        pub channel: Channel,
        pub exchange: String,
        pub queue: String,
    }

    impl TestQueue {
        pub async fn new(url: &str, exchange: &str, routing_key: &str) -> TestQueue {
            let connection = Connection::connect(url, ConnectionProperties::default())
                .await
                .expect("the test broker accepts a connection");
            let channel = connection.create_channel().await.unwrap();
            channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let queue = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let queue = queue.name().as_str().to_string();
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.into(),
                    routing_key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            TestQueue {
                connection,
                channel,
                exchange: exchange.to_string(),
                queue,
            }
        }

        /// The next message on the queue, waiting a little for it.
        pub async fn next(&self) -> lapin::message::BasicGetMessage {
            for _ in 0..50 {
                if let Some(message) = self
                    .channel
                    .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap()
                {
                    return message;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("no message arrived on {}", self.queue);
        }

        pub async fn drop_all(self) {
            self.channel
                .exchange_delete(
                    self.exchange.as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await
                .unwrap();
            self.connection.close(200, "OK".into()).await.unwrap();
        }
    }
}

#[tokio::test]
async fn amqp_publishes_persistent_messages_with_confirms() {
    let Some(url) = crate::common::amqp_url("AMQP driver test") else {
        return;
    };
    let exchange = unique("tongban.test");
    let queue = broker::TestQueue::new(&url, &exchange, "applications.#").await;
    let driver = AmqpDriver::new(
        url.clone(),
        exchange.clone(),
        "applications.scjg".into(),
        TIMEOUT,
    );

    let delivered = driver.deliver(&json_message()).await.unwrap();
    assert_eq!(delivered.status, None);
    let message = queue.next().await;
    let properties = &message.delivery.properties;
    assert_eq!(
        properties.message_id().as_ref().map(|s| s.as_str()),
        Some("app-0001")
    );
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    let assertion = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("tongban-assertion").cloned());
    match assertion {
        Some(lapin::types::AMQPValue::LongString(s)) => {
            assert_eq!(s.as_bytes(), b"signed.assertion.token")
        }
        other => panic!("tongban-assertion header: {other:?}"),
    }
    assert_eq!(message.delivery.data, json_message().body);
    assert_eq!(message.delivery.routing_key.as_str(), "applications.scjg");

    // Concurrent deliveries share the connection, and all arrive.
    let bodies: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    let ids: Vec<String> = (0..10).map(|i| format!("app-{i:04}")).collect();
    let deliveries = bodies.iter().zip(&ids).map(|(body, id)| {
        let driver = &driver;
        async move {
            driver
                .deliver(&Outgoing {
                    application_id: id,
                    body: body.as_bytes(),
                    content_type: "text/plain",
                    assertion: None,
                    traceparent: None,
                })
                .await
        }
    });
    for result in futures_util::future::join_all(deliveries).await {
        result.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        let message = queue.next().await;
        assert!(message.delivery.properties.headers().is_none());
        got.push(String::from_utf8(message.delivery.data).unwrap());
    }
    got.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(got, want);
    queue.drop_all().await;
}

#[tokio::test]
async fn amqp_unroutable_message_is_retryable() {
    let Some(url) = crate::common::amqp_url("AMQP driver test") else {
        return;
    };
    let exchange = unique("tongban.test.unbound");
    let driver = AmqpDriver::new(
        url.clone(),
        exchange.clone(),
        "nobody.listens".into(),
        TIMEOUT,
    );
    let err = driver.deliver(&json_message()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("no queue is bound"), "{err}");
    assert_no_body_in(&err);
    // The driver declared the exchange; remove it.
    let queue = broker::TestQueue::new(&url, &exchange, "#").await;
    queue.drop_all().await;
}

#[tokio::test]
async fn amqp_dead_broker_is_retryable_quickly_and_backs_off() {
    // Needs no broker: nothing listens on the port.
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", dead_port());
    let driver = AmqpDriver::new(url, "tongban.test".into(), "x".into(), TIMEOUT);
    let started = Instant::now();
    let err = driver.deliver(&json_message()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.to_string().contains("guest:guest"), "{err}");

    // While backing off, the driver answers at once without trying.
    let started = Instant::now();
    let err = driver.deliver(&json_message()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    match err {
        DeliveryError::Retryable {
            retry_after: Some(wait),
            reason,
            ..
        } => {
            assert!(wait <= tongban::adapters::amqp::INITIAL_BACKOFF, "{wait:?}");
            assert!(reason.contains("next attempt"), "{reason}");
        }
        other => panic!("expected Retryable with retry_after, got {other:?}"),
    }

    // After the backoff it tries again (and fails again, doubling the wait).
    tokio::time::sleep(tongban::adapters::amqp::INITIAL_BACKOFF).await;
    match driver.deliver(&json_message()).await.unwrap_err() {
        DeliveryError::Retryable {
            retry_after: Some(wait),
            reason,
            ..
        } => {
            assert!(reason.contains("cannot connect"), "{reason}");
            assert_eq!(wait, tongban::adapters::amqp::INITIAL_BACKOFF * 2);
        }
        other => panic!("expected Retryable, got {other:?}"),
    }
}

#[tokio::test]
async fn amqp_reconnects_and_redeclares_after_a_channel_error() {
    let Some(url) = crate::common::amqp_url("AMQP driver test") else {
        return;
    };
    let exchange = unique("tongban.test.reconnect");
    let driver = AmqpDriver::new(url.clone(), exchange.clone(), "k".into(), TIMEOUT);
    let queue = broker::TestQueue::new(&url, &exchange, "k").await;
    driver.deliver(&json_message()).await.unwrap();
    queue.next().await;

    // The exchange goes away under the driver: the broker closes its channel.
    queue.drop_all().await;
    let err = driver.deliver(&json_message()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_no_body_in(&err);

    // Backing off, then a new connection that declares the exchange again.
    let err = driver.deliver(&json_message()).await.unwrap_err();
    assert!(err.to_string().contains("next attempt"), "{err}");
    let queue = broker::TestQueue::new(&url, &exchange, "k").await;
    tokio::time::sleep(tongban::adapters::amqp::INITIAL_BACKOFF).await;
    driver.deliver(&json_message()).await.unwrap();
    assert_eq!(queue.next().await.delivery.data, json_message().body);
    queue.drop_all().await;
}
