using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Prometheus;

/// <summary>
/// Sends every closed window to a Prometheus remote-write 1.0 receiver (Prometheus, VictoriaMetrics, Mimir,
/// Thanos, Cortex): protobuf <c>WriteRequest</c>s, snappy-compressed, named as docs/time-series-sink.md says.
/// <see cref="WriteAsync"/> encodes the window and queues its requests; lanes send them, retrying server and
/// network errors with capped exponential backoff and jitter, dropping (and counting) what the receiver rejects.
/// </summary>
public sealed class RemoteWriteSink : IWindowSink, IDeliveryStatus
{
    private static readonly MediaTypeHeaderValue s_protobuf = new("application/x-protobuf");

    private readonly RemoteWriteSinkOptions _options;
    private readonly HttpClient _client;
    private readonly RemoteWriteEncoder _encoder;
    private readonly TimeProvider _time;
    private readonly Lane[] _lanes;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task[] _senders;
    private readonly long[] _droppedSamples = new long[Enum.GetValues<RemoteWriteDropReason>().Length];
    private readonly long[] _droppedRequests = new long[Enum.GetValues<RemoteWriteDropReason>().Length];
    private TaskCompletionSource _idle = NewIdle(completed: true);
    private int _queued;
    private int _queuedSamples;
    private int _pending;
    private int _retryingLanes;
    private long _samplesEncoded;
    private long _samplesSent;
    private long _requestsSent;
    private long _bytesSent;
    private long _samplesRetried;
    private long _requestsRetried;
    private long _requestsSplit;
    private long _lastSentEvent;
    private long _lastDropEvent;
    private long _events;
    private string? _lastError;
    private int _disposed;
    private BatchDelivery? _currentDelivery;

    /// <summary>Creates the sink and starts its sending lanes.</summary>
    public RemoteWriteSink(RemoteWriteSinkOptions options)
        : this(options, null)
    {
    }

    /// <summary>Creates the sink over a given HTTP handler (for proxies or tests); the sink disposes it.</summary>
    public RemoteWriteSink(RemoteWriteSinkOptions options, HttpMessageHandler? handler)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _time = options.TimeProvider;
        _client = new HttpClient(handler ?? CreateHandler(options), disposeHandler: true) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        _encoder = new RemoteWriteEncoder(options.MaxConcurrentRequests, options.MaxRequestBytes, options.MaxTrackedSeries, options.SeriesIdleTimeout, Enqueue);
        _lanes = [.. Enumerable.Range(0, options.MaxConcurrentRequests).Select(_ => new Lane())];
        _senders = [.. _lanes.Select(lane => Task.Run(() => SendLoopAsync(lane)))];
    }

    /// <inheritdoc />
    public string Name => _options.Name;

    /// <summary>Ok, retrying or dropping: see <see cref="RemoteWriteSinkState"/>.</summary>
    public RemoteWriteSinkState State
    {
        get
        {
            if (Interlocked.Read(ref _lastDropEvent) > Interlocked.Read(ref _lastSentEvent))
            {
                return RemoteWriteSinkState.Dropping;
            }

            return Volatile.Read(ref _retryingLanes) > 0 ? RemoteWriteSinkState.Retrying : RemoteWriteSinkState.Ok;
        }
    }

    /// <inheritdoc />
    SinkState IDeliveryStatus.DeliveryState => State switch
    {
        RemoteWriteSinkState.Retrying => SinkState.Retrying,
        RemoteWriteSinkState.Dropping => SinkState.Dropping,
        _ => SinkState.Ok,
    };

    /// <inheritdoc />
    string? IDeliveryStatus.DeliveryError => LastError;

    /// <summary>Samples encoded from windows so far.</summary>
    public long SamplesEncoded => Interlocked.Read(ref _samplesEncoded);

    /// <summary>Samples in requests the receiver accepted (2xx).</summary>
    public long SamplesSent => Interlocked.Read(ref _samplesSent);

    /// <summary>Requests the receiver accepted (2xx).</summary>
    public long RequestsSent => Interlocked.Read(ref _requestsSent);

    /// <summary>Compressed bytes of accepted requests.</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Samples of failed attempts that were retried, once per retry.</summary>
    public long SamplesRetried => Interlocked.Read(ref _samplesRetried);

    /// <summary>Failed attempts that were retried.</summary>
    public long RequestsRetried => Interlocked.Read(ref _requestsRetried);

    /// <summary>Requests split in two after a 413 answer.</summary>
    public long RequestsSplit => Interlocked.Read(ref _requestsSplit);

    /// <summary>All samples given up, every reason.</summary>
    public long SamplesDropped => _droppedSamples.Sum(d => Interlocked.Read(ref d));

    /// <summary>Requests waiting in the queue, not counting those in flight.</summary>
    public int QueueDepth => Volatile.Read(ref _queued);

    /// <summary>Samples in the requests waiting in the queue.</summary>
    public int QueuedSamples => Volatile.Read(ref _queuedSamples);

    /// <summary>The queue's bound, in requests.</summary>
    public int QueueCapacity => _options.QueueCapacity;

    /// <summary>Series whose cumulative counters are kept.</summary>
    public int TrackedSeries
    {
        get
        {
            lock (_gate)
            {
                return _encoder.TrackedSeries;
            }
        }
    }

    /// <summary>The last error: the failed request's status and the receiver's message, or the exception.</summary>
    public string? LastError => Volatile.Read(ref _lastError);

    /// <summary>Samples given up for one reason.</summary>
    public long SamplesDroppedFor(RemoteWriteDropReason reason) => Interlocked.Read(ref _droppedSamples[(int)reason]);

    /// <summary>Requests given up for one reason.</summary>
    public long RequestsDroppedFor(RemoteWriteDropReason reason) => Interlocked.Read(ref _droppedRequests[(int)reason]);

    /// <summary>
    /// Encodes the window into requests and queues them (the oldest is dropped if the queue is full); returns once
    /// they are queued, or with <see cref="RemoteWriteSinkOptions.AcknowledgeOnDelivery"/> once each is sent or dropped.
    /// </summary>
    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        BatchDelivery? delivery = _options.AcknowledgeOnDelivery ? new BatchDelivery() : null;
        // Encoding runs on the pipeline's task for this sink, one batch at a time; the gate only orders it with
        // the lanes' reads of the queue.
        long samples;
        lock (_gate)
        {
            _currentDelivery = delivery;
            try
            {
                samples = _encoder.Encode(batch.RecordBatch, batch.WindowEndUnixMs, _options.Instance ?? batch.Instance);
            }
            finally
            {
                _currentDelivery = null;
            }
        }

        Interlocked.Add(ref _samplesEncoded, samples);
        if (delivery is null)
        {
            return ValueTask.CompletedTask;
        }

        delivery.Done();
        return new ValueTask(delivery.Task.WaitAsync(cancellationToken));
    }

    /// <summary>Waits until every queued request is sent or dropped.</summary>
    public async ValueTask CompleteAsync(CancellationToken cancellationToken)
    {
        Task idle;
        lock (_gate)
        {
            idle = _idle.Task;
        }

        await idle.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stops the lanes; requests still queued or in flight are dropped and counted as <see cref="RemoteWriteDropReason.Shutdown"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_senders).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Expected: the lanes stop on the token.
        }

        lock (_gate)
        {
            foreach (Lane lane in _lanes)
            {
                while (lane.Queue.TryDequeue(out EncodedRequest? request))
                {
                    _queued--;
                    _queuedSamples -= request.Samples;
                    Drop(request.Samples, RemoteWriteDropReason.Shutdown, null);
                    Finished(request);
                }
            }
        }

        _client.Dispose();
        _stop.Dispose();
    }

    private static TaskCompletionSource NewIdle(bool completed)
    {
        var idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (completed)
        {
            idle.SetResult();
        }

        return idle;
    }

    private static SocketsHttpHandler CreateHandler(RemoteWriteSinkOptions options)
    {
        var handler = new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = options.MaxConcurrentRequests,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = options.Timeout,
        };
        if (options.CaCertificateFile is not null)
        {
            var authorities = new X509Certificate2Collection();
            authorities.ImportFromPemFile(options.CaCertificateFile);
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                {
                    if (certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
                    {
                        return false;
                    }

                    using var chain = new X509Chain();
                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    return chain.Build(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
                },
            };
        }

        return handler;
    }

    /// <summary>Called by the encoder, under the gate, for each finished request.</summary>
    private void Enqueue(EncodedRequest request)
    {
        if (_queued >= _options.QueueCapacity)
        {
            DropOldest();
        }

        Lane lane = _lanes[request.Lane];
        if (_currentDelivery is { } delivery)
        {
            request.Delivery = delivery;
            delivery.Add();
        }

        lane.Queue.Enqueue(request);
        _queued++;
        _queuedSamples += request.Samples;
        if (_pending++ == 0)
        {
            _idle = NewIdle(completed: false);
        }

        lane.Signal.Release();
    }

    private void DropOldest()
    {
        Lane? oldest = null;
        foreach (Lane lane in _lanes)
        {
            if (lane.Queue.TryPeek(out EncodedRequest? head) && (oldest is null || head.Sequence < oldest.Queue.Peek().Sequence))
            {
                oldest = lane;
            }
        }

        EncodedRequest dropped = oldest!.Queue.Dequeue();
        _queued--;
        _queuedSamples -= dropped.Samples;
        Drop(dropped.Samples, RemoteWriteDropReason.QueueFull, $"queue full ({_options.QueueCapacity} requests): the oldest request was dropped");
        Finished(dropped);
    }

    /// <summary>One request has left the sink, sent or dropped; called under the gate.</summary>
    private void Finished(EncodedRequest request)
    {
        request.Delivery?.Done();
        if (--_pending == 0)
        {
            _idle.TrySetResult();
        }
    }

    private void Drop(int samples, RemoteWriteDropReason reason, string? error)
    {
        Interlocked.Add(ref _droppedSamples[(int)reason], samples);
        Interlocked.Increment(ref _droppedRequests[(int)reason]);
        Interlocked.Exchange(ref _lastDropEvent, Interlocked.Increment(ref _events));
        if (error is not null)
        {
            Volatile.Write(ref _lastError, error);
        }
    }

    private async Task SendLoopAsync(Lane lane)
    {
        CancellationToken stop = _stop.Token;
        while (true)
        {
            await lane.Signal.WaitAsync(stop).ConfigureAwait(false);
            EncodedRequest? request;
            lock (_gate)
            {
                // The queue may be shorter than the signal count: overflow drops requests without taking signals.
                if (!lane.Queue.TryDequeue(out request))
                {
                    continue;
                }

                _queued--;
                _queuedSamples -= request.Samples;
            }

            try
            {
                await SendAsync(request.Body, request.Samples, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                Drop(request.Samples, RemoteWriteDropReason.Shutdown, null);
                throw;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Not a delivery failure (those are handled in SendAsync) but a fault of this request: the lane goes on.
                Drop(request.Samples, RemoteWriteDropReason.Rejected, $"{e.GetType().Name}: {e.Message}");
            }
            finally
            {
                lock (_gate)
                {
                    Finished(request);
                }
            }
        }
    }

    /// <summary>Sends one request until it is accepted, rejected, split or out of retries.</summary>
    private async Task SendAsync(byte[] body, int samples, CancellationToken stop)
    {
        bool retrying = false;
        try
        {
            for (int attempt = 0; ; attempt++)
            {
                TimeSpan? retryAfter = null;
                string error;
                try
                {
                    using HttpRequestMessage message = CreateRequest(body);
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
                    timeout.CancelAfter(_options.Timeout);
                    using HttpResponseMessage response = await _client.SendAsync(message, HttpCompletionOption.ResponseContentRead, timeout.Token).ConfigureAwait(false);
                    int status = (int)response.StatusCode;
                    if (status is >= 200 and < 300)
                    {
                        Interlocked.Add(ref _samplesSent, samples);
                        Interlocked.Increment(ref _requestsSent);
                        Interlocked.Add(ref _bytesSent, body.Length);
                        Interlocked.Exchange(ref _lastSentEvent, Interlocked.Increment(ref _events));
                        return;
                    }

                    error = $"HTTP {status} {response.ReasonPhrase}: {await ReadMessageAsync(response, stop).ConfigureAwait(false)}";
                    if (status == 413)
                    {
                        var halves = RemoteWriteEncoder.Split(body);
                        if (halves is null)
                        {
                            Drop(samples, RemoteWriteDropReason.PayloadTooLarge, error);
                            return;
                        }

                        // Two smaller requests of whole series, sent in order, keep each series' samples in order.
                        Interlocked.Increment(ref _requestsSplit);
                        Volatile.Write(ref _lastError, error);
                        (byte[] first, int firstSamples, byte[] second, int secondSamples) = halves.Value;
                        await SendAsync(first, firstSamples, stop).ConfigureAwait(false);
                        await SendAsync(second, secondSamples, stop).ConfigureAwait(false);
                        return;
                    }

                    if (status == 429 && _options.RetryOnRateLimit)
                    {
                        retryAfter = RetryAfter(response);
                    }
                    else if (status < 500)
                    {
                        Drop(samples, status == 429 ? RemoteWriteDropReason.RateLimited : RemoteWriteDropReason.Rejected, error);
                        return;
                    }
                }
                catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                {
                    error = $"timeout: no complete answer within {_options.Timeout.TotalSeconds:0.###} s";
                }
                catch (HttpRequestException e)
                {
                    error = $"{e.GetType().Name}: {e.Message}{(e.InnerException is null ? "" : " (" + e.InnerException.Message + ")")}";
                }
                catch (IOException e)
                {
                    error = $"{e.GetType().Name}: {e.Message}";
                }

                Volatile.Write(ref _lastError, error);
                if (_options.MaxRetries is int max && attempt >= max)
                {
                    Drop(samples, RemoteWriteDropReason.RetriesExhausted, error);
                    return;
                }

                if (!retrying)
                {
                    retrying = true;
                    Interlocked.Increment(ref _retryingLanes);
                }

                Interlocked.Increment(ref _requestsRetried);
                Interlocked.Add(ref _samplesRetried, samples);
                await Task.Delay(retryAfter ?? Backoff(attempt), _time, stop).ConfigureAwait(false);
            }
        }
        finally
        {
            if (retrying)
            {
                Interlocked.Decrement(ref _retryingLanes);
            }
        }
    }

    private HttpRequestMessage CreateRequest(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = s_protobuf;
        content.Headers.ContentEncoding.Add("snappy");
        var message = new HttpRequestMessage(HttpMethod.Post, _options.Endpoint) { Content = content, Version = HttpVersion.Version11 };
        message.Headers.Add("X-Prometheus-Remote-Write-Version", "0.1.0");
        message.Headers.UserAgent.Add(new ProductInfoHeaderValue("monitoring-stream", "1.0"));
        if (_options.BearerToken is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _options.BearerToken);
        }
        else if (_options.BasicAuthUsername is not null || _options.BasicAuthPassword is not null)
        {
            string credentials = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_options.BasicAuthUsername}:{_options.BasicAuthPassword}"));
            message.Headers.Authorization = new AuthenticationHeaderValue("Basic", credentials);
        }

        foreach (KeyValuePair<string, string> header in _options.Headers)
        {
            message.Headers.TryAddWithoutValidation(header.Key, header.Value);
        }

        return message;
    }

    /// <summary>Capped exponential backoff with jitter: a random delay between half and all of min(max, min * 2^attempt).</summary>
    private TimeSpan Backoff(int attempt)
    {
        double ceiling = Math.Min(_options.MaxBackoff.Ticks, _options.MinBackoff.Ticks * Math.Pow(2, Math.Min(attempt, 30)));
        return TimeSpan.FromTicks((long)(ceiling * (0.5 + (Random.Shared.NextDouble() * 0.5))));
    }

    private TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        RetryConditionHeaderValue? header = response.Headers.RetryAfter;
        TimeSpan? delay = header?.Delta ?? (header?.Date is DateTimeOffset date ? date - _time.GetUtcNow() : null);
        if (delay is not TimeSpan d)
        {
            return null;
        }

        return d < TimeSpan.Zero ? TimeSpan.Zero : (d > _options.MaxRetryAfter ? _options.MaxRetryAfter : d);
    }

    private static async Task<string> ReadMessageAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        string text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        text = text.Trim();
        return text.Length > 512 ? text[..512] + "..." : text;
    }

    private sealed class Lane
    {
        public Queue<EncodedRequest> Queue { get; } = new();

        public SemaphoreSlim Signal { get; } = new(0);
    }
}
