// The HTTP front of `jevons serve` (cpp-httplib): OpenAI-compatible routes
//   POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
//   GET /health (503 until a backend is attached), GET /metrics (Prometheus),
//   GET / (the web chat page).
// Streaming responses are SSE; a client that goes away cancels its request, and the
// engine frees its KV blocks at the next step.
#pragma once
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "meter/meter.h"
#include "engine/scheduler.h"
#include "tokenizer/chat_template.h"

namespace jevons::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: an ephemeral port (see HttpServer::port())
  std::string api_key;             // non-empty: every /v1 route needs "Authorization: Bearer KEY"
  std::string cors_origin;         // non-empty: Access-Control-Allow-Origin for it ("*" allowed)
  std::string model_name = "jevons";
  size_t max_body_bytes = size_t(8) << 20;
  int http_threads = 128;          // concurrent connections served (streams hold one each)
  bool log_requests = true;        // a line per request on stderr (and each error, with its request id)
  double request_timeout_s = 0;    // > 0: a request running longer is cut (error event / body, code request_timeout)
};

// What the routes generate with; all must outlive the server (or its stop()).
struct Backend {
  engine::Scheduler* scheduler = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null: chat completions answer 400
  meter::Meter* meter = nullptr;
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions options);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the socket (Error if it cannot) and returns the port.
  int bind();
  // Serves on a background thread (after bind()).
  void start();
  // Serves on the calling thread until stop() (after bind()).
  void run();
  // Makes the model routes live; /health turns 200.
  void attach(const Backend& backend);
  // Graceful shutdown (SIGTERM): new generation requests get 503 at once; requests in
  // flight may finish for up to `timeout`; then each open stream ends with an error event
  // and [DONE] (a non-streaming response with an error body) and its work is cancelled.
  // Returns how many requests it had to cut short. stop() follows.
  int drain(std::chrono::milliseconds timeout);
  int in_flight() const;
  // Stops accepting, ends open streams, joins the threads. Idempotent.
  void stop();
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jevons::server
