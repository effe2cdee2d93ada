namespace Monitoring.Stream.Prometheus;

/// <summary>Settings of a <see cref="RemoteWriteSink"/>; everything but <see cref="Endpoint"/> has a default.</summary>
public sealed class RemoteWriteSinkOptions
{
    /// <summary>The receiver's remote-write URL, e.g. <c>http://victoria:8428/api/v1/write</c> or <c>http://prometheus:9090/api/v1/write</c>.</summary>
    public Uri? Endpoint { get; set; }

    /// <summary>The sink's name in logs and self-metrics (default <c>remote-write</c>).</summary>
    public string Name { get; set; } = "remote-write";

    /// <summary>User name of HTTP basic authentication; set with <see cref="BasicAuthPassword"/>, not with <see cref="BearerToken"/>.</summary>
    public string? BasicAuthUsername { get; set; }

    /// <summary>Password of HTTP basic authentication.</summary>
    public string? BasicAuthPassword { get; set; }

    /// <summary>Bearer token sent as <c>Authorization: Bearer ...</c>; not with basic authentication.</summary>
    public string? BearerToken { get; set; }

    /// <summary>
    /// A PEM file of the certificate authorities that the receiver's TLS certificate must chain to, instead of
    /// the system's trust store (default: none, the system's trust store is used).
    /// </summary>
    public string? CaCertificateFile { get; set; }

    /// <summary>Longest one request may take, headers and body, before it is abandoned and retried (default 30 s; positive, at most 1 day).</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Extra headers sent with every request, such as <c>X-Scope-OrgID</c> for Mimir, Cortex or Loki tenants.</summary>
    public IDictionary<string, string> Headers { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

    /// <summary>Largest uncompressed request body; a window is split into as many requests as it needs (default 1 MiB).</summary>
    public int MaxRequestBytes { get; set; } = 1 << 20;

    /// <summary>Encoded requests waiting to be sent, over all lanes, before the oldest is dropped (default 1,024).</summary>
    public int QueueCapacity { get; set; } = 1024;

    /// <summary>
    /// Lanes, each sending one request at a time; a series always goes through the same lane, so its samples stay
    /// in timestamp order while up to this many requests are in flight (default 4).
    /// </summary>
    public int MaxConcurrentRequests { get; set; } = 4;

    /// <summary>Delay before the first retry; doubles with each retry, with jitter (default 30 ms, as Prometheus).</summary>
    public TimeSpan MinBackoff { get; set; } = TimeSpan.FromMilliseconds(30);

    /// <summary>Longest delay between two attempts of a request (default 5 s, as Prometheus).</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Retries of one request before it is dropped; null retries until it succeeds or the queue's bound drops it (default null).</summary>
    public int? MaxRetries { get; set; }

    /// <summary>Whether 429 Too Many Requests is retried, after the server's <c>Retry-After</c> when it sends one (default false: dropped).</summary>
    public bool RetryOnRateLimit { get; set; }

    /// <summary>Longest <c>Retry-After</c> honoured; a longer one is cut to this (default 5 min).</summary>
    public TimeSpan MaxRetryAfter { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Whether <see cref="RemoteWriteSink.WriteAsync"/> completes only once every request of the window is sent or
    /// dropped (and counted), so that the pipeline acknowledges a window to its sources (Kafka offsets) only after
    /// delivery; the pipeline's sink queue then holds windows back while the receiver is down (default false: it
    /// completes once the requests are queued).
    /// </summary>
    public bool AcknowledgeOnDelivery { get; set; }

    /// <summary>Value of the <c>instance</c> label added to every series (default: the engine instance of each window batch).</summary>
    public string? Instance { get; set; }

    /// <summary>Series whose cumulative <c>_count</c> and <c>_sum</c> the sink keeps; beyond it the longest-unseen are forgotten (default 1,000,000).</summary>
    public int MaxTrackedSeries { get; set; } = 1_000_000;

    /// <summary>A series without data for this long (in window time) is forgotten; it restarts from zero if it returns (default 15 min).</summary>
    public TimeSpan SeriesIdleTimeout { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>The clock of backoff delays; tests pass a fake one.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    internal void Validate()
    {
        if (Endpoint is null || !Endpoint.IsAbsoluteUri || (Endpoint.Scheme != Uri.UriSchemeHttp && Endpoint.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException("The endpoint must be an absolute http or https URL.", nameof(Endpoint));
        }

        if (BearerToken is not null && (BasicAuthUsername is not null || BasicAuthPassword is not null))
        {
            throw new ArgumentException("Set either basic authentication or a bearer token, not both.", nameof(BearerToken));
        }

        ArgumentException.ThrowIfNullOrWhiteSpace(Name, nameof(Name));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestBytes, 1024, nameof(MaxRequestBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(QueueCapacity, 1, nameof(QueueCapacity));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConcurrentRequests, 1, nameof(MaxConcurrentRequests));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxConcurrentRequests, 256, nameof(MaxConcurrentRequests));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxTrackedSeries, 1, nameof(MaxTrackedSeries));
        // The request's connect timeout and cancellation timer refuse spans beyond about 24.8 days; a day is plenty.
        if (Timeout <= TimeSpan.Zero || Timeout > TimeSpan.FromDays(1))
        {
            throw new ArgumentOutOfRangeException(nameof(Timeout), Timeout, "The request timeout must be positive and at most 1 day.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(MinBackoff, TimeSpan.Zero, nameof(MinBackoff));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBackoff, MinBackoff, nameof(MaxBackoff));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(SeriesIdleTimeout, TimeSpan.Zero, nameof(SeriesIdleTimeout));
        if (MaxRetries is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRetries), MaxRetries, "Retries cannot be negative.");
        }

        if (CaCertificateFile is not null && !File.Exists(CaCertificateFile))
        {
            throw new FileNotFoundException("The CA certificate file does not exist.", CaCertificateFile);
        }

        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }
}
