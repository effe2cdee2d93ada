using System.Net;

namespace Monitoring.Stream.Server;

/// <summary>
/// Settings of the <c>run</c> command, bound from the <c>MonitoringStream:Server</c> configuration section
/// (appsettings.json, then <c>MONITORING_STREAM__Server__...</c> environment variables, then flags).
/// </summary>
internal sealed class ServerSettings
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "MonitoringStream:Server";

    /// <summary>Where Kestrel listens; several URLs separated by ';'. Port 0 picks a free port.</summary>
    public string Urls { get; set; } = "http://127.0.0.1:9400";

    /// <summary>The data folder: the local Arrow store writes to <c>&lt;DataDirectory&gt;/windows</c> unless <c>ArrowStore:Directory</c> is set.</summary>
    public string DataDirectory { get; set; } = "data";

    /// <summary>The bearer token required on <c>/api/*</c> and <c>/metrics</c>; required to bind beyond loopback.</summary>
    public string? ApiToken { get; set; }

    /// <summary>Whether a small synthetic load runs inside the service.</summary>
    public bool DemoLoad { get; set; }

    /// <summary>Points per second of the synthetic load.</summary>
    public int DemoLoadPointsPerSecond { get; set; } = 2000;

    /// <summary>Largest request body accepted, in bytes, as sent (compressed or not).</summary>
    public long MaxRequestBodyBytes { get; set; } = 8L << 20;

    /// <summary>Largest ingest body after gzip decompression, in bytes (also the MessagePack decoder's message limit).</summary>
    public int MaxDecompressedBodyBytes { get; set; } = 16 << 20;

    /// <summary>Most points in one ingest request.</summary>
    public int MaxPointsPerRequest { get; set; } = 200_000;

    /// <summary>Most labels on one series of an ingest request.</summary>
    public int MaxLabelsPerSeries { get; set; } = 32;

    /// <summary>Longest metric name, label name or label value of an ingest request, in UTF-8 bytes.</summary>
    public int MaxStringBytes { get; set; } = 4096;

    /// <summary>Largest total size of a request's headers, in bytes.</summary>
    public int MaxRequestHeadersBytes { get; set; } = 32 * 1024;

    /// <summary>Ingest requests processed at once; more wait up to <see cref="IngestQueueTimeout"/>, then get 429.</summary>
    public int IngestConcurrency { get; set; } = Math.Max(2, Environment.ProcessorCount * 2);

    /// <summary>Ingest requests that may wait for a slot at once; any more are answered 429 at once.</summary>
    public int IngestQueueLimit { get; set; } = Math.Max(2, Environment.ProcessorCount * 2);

    /// <summary>How long an ingest request waits for a free slot before 429.</summary>
    public TimeSpan IngestQueueTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Fullest shard queue (fraction of capacity) at which ingest answers 503 instead of queueing more.</summary>
    public double SaturationQueueFill { get; set; } = 0.9;

    /// <summary>Slowest request body accepted, in bytes per second, after <see cref="RequestBodyGracePeriod"/>.</summary>
    public double MinRequestBodyBytesPerSecond { get; set; } = 240;

    /// <summary>Time a request body may stay below <see cref="MinRequestBodyBytesPerSecond"/> before the connection is closed.</summary>
    public TimeSpan RequestBodyGracePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Time allowed to receive a request's headers.</summary>
    public TimeSpan RequestHeadersTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// After the first stop signal, how long the service goes on serving before its stop begins, answering
    /// <c>/health/ready</c> 503 and ingest 503 <c>stopping</c>, so a load balancer takes it out of rotation first.
    /// </summary>
    public TimeSpan StopDrainDelay { get; set; } = TimeSpan.Zero;

    /// <summary>Also send every window by Prometheus remote write to this URL.</summary>
    public string? RemoteWriteUrl { get; set; }

    /// <summary>Longest one remote-write request may take, headers and body, before it is abandoned and retried.</summary>
    public TimeSpan RemoteWriteTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Kafka source and sink.</summary>
    public KafkaSettings Kafka { get; set; } = new();

    /// <summary>The URLs, split.</summary>
    public IReadOnlyList<string> UrlList => Urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Every problem of these settings, each naming the setting and its flag.</summary>
    public IReadOnlyList<string> Validate()
    {
        var failures = new List<string>();
        void Check(bool ok, string setting, string flag, object? value, string rule)
        {
            if (!ok)
            {
                failures.Add($"{SectionName}:{setting}{(flag.Length == 0 ? string.Empty : $" ({flag})")} = {value ?? "(null)"}: {rule}");
            }
        }

        bool beyondLoopback = false;
        Check(UrlList.Count > 0, "Urls", "--urls", Urls, "must name at least one http:// URL.");
        foreach (string url in UrlList)
        {
            bool ok = TryParseListenUrl(url, out string host, out bool https);
            Check(ok && !https, "Urls", "--urls", url, "must be an http://host:port URL (TLS is for the proxy in front).");
            if (ok && !IsLoopback(host))
            {
                beyondLoopback = true;
            }
        }

        Check(!beyondLoopback || !string.IsNullOrWhiteSpace(ApiToken), "ApiToken", "--api-token", "(not set)",
            "binding beyond loopback needs a bearer token for ingestion and queries; set one, or listen on 127.0.0.1.");
        Check(ApiToken is null || ApiToken.Length >= 16, "ApiToken", "--api-token", "(hidden)", "must be at least 16 characters.");
        Check(!string.IsNullOrWhiteSpace(DataDirectory), "DataDirectory", "--data-dir", DataDirectory, "must name a folder.");
        Check(string.IsNullOrWhiteSpace(DataDirectory) || !File.Exists(DataDirectory), "DataDirectory", "--data-dir", DataDirectory,
            "is a file; it must name a folder (created when missing).");
        Check(DemoLoadPointsPerSecond is >= 1 and <= 10_000_000, "DemoLoadPointsPerSecond", string.Empty, DemoLoadPointsPerSecond, "must be between 1 and 10000000.");
        Check(MaxRequestBodyBytes is >= 1024 and <= 1L << 30, "MaxRequestBodyBytes", string.Empty, MaxRequestBodyBytes, "must be between 1024 and 1073741824.");
        Check(MaxDecompressedBodyBytes is >= 1024 and <= 1 << 30, "MaxDecompressedBodyBytes", string.Empty, MaxDecompressedBodyBytes, "must be between 1024 and 1073741824.");
        Check(MaxPointsPerRequest is >= 1 and <= 10_000_000, "MaxPointsPerRequest", string.Empty, MaxPointsPerRequest, "must be between 1 and 10000000.");
        Check(MaxLabelsPerSeries is >= 0 and <= 1024, "MaxLabelsPerSeries", string.Empty, MaxLabelsPerSeries, "must be between 0 and 1024.");
        Check(MaxStringBytes is >= 16 and <= 1 << 20, "MaxStringBytes", string.Empty, MaxStringBytes, "must be between 16 and 1048576.");
        Check(MaxRequestHeadersBytes is >= 1024 and <= 1 << 20, "MaxRequestHeadersBytes", string.Empty, MaxRequestHeadersBytes, "must be between 1024 and 1048576.");
        Check(IngestConcurrency is >= 1 and <= 4096, "IngestConcurrency", string.Empty, IngestConcurrency, "must be between 1 and 4096.");
        Check(IngestQueueLimit is >= 0 and <= 65536, "IngestQueueLimit", string.Empty, IngestQueueLimit, "must be between 0 and 65536.");
        // Timeouts are capped at a day: the timers and waits that enforce them refuse longer ones (about 24.8 days
        // for a semaphore's wait), which would otherwise fail every request that reaches them.
        TimeSpan day = TimeSpan.FromDays(1);
        Check(IngestQueueTimeout >= TimeSpan.Zero && IngestQueueTimeout <= day, "IngestQueueTimeout", string.Empty, IngestQueueTimeout, "must be from 0 to 1 day.");
        Check(SaturationQueueFill is > 0 and <= 1, "SaturationQueueFill", string.Empty, SaturationQueueFill, "must be above 0 and at most 1.");
        Check(MinRequestBodyBytesPerSecond > 0 && double.IsFinite(MinRequestBodyBytesPerSecond), "MinRequestBodyBytesPerSecond", string.Empty, MinRequestBodyBytesPerSecond, "must be positive and finite.");
        Check(RequestBodyGracePeriod > TimeSpan.Zero && RequestBodyGracePeriod <= day, "RequestBodyGracePeriod", string.Empty, RequestBodyGracePeriod, "must be positive and at most 1 day.");
        Check(RequestHeadersTimeout > TimeSpan.Zero && RequestHeadersTimeout <= day, "RequestHeadersTimeout", string.Empty, RequestHeadersTimeout, "must be positive and at most 1 day.");
        Check(StopDrainDelay >= TimeSpan.Zero && StopDrainDelay <= TimeSpan.FromMinutes(10), "StopDrainDelay", string.Empty, StopDrainDelay, "must be from 0 to 10 minutes.");
        Check(RemoteWriteTimeout > TimeSpan.Zero && RemoteWriteTimeout <= day, "RemoteWriteTimeout", string.Empty, RemoteWriteTimeout, "must be positive and at most 1 day (00:00:30 by default).");
        Check(RemoteWriteUrl is null || (Uri.TryCreate(RemoteWriteUrl, UriKind.Absolute, out Uri? rw) && (rw.Scheme == Uri.UriSchemeHttp || rw.Scheme == Uri.UriSchemeHttps)),
            "RemoteWriteUrl", "--remote-write-url", RemoteWriteUrl, "must be an http or https URL.");
        Check(!(Kafka.Mock && !string.IsNullOrWhiteSpace(Kafka.BootstrapServers)), "Kafka:Mock", "--kafka-mock", Kafka.Mock, "cannot be combined with Kafka:BootstrapServers (--kafka-bootstrap).");
        if (Kafka.Enabled)
        {
            Check(!string.IsNullOrWhiteSpace(Kafka.PointsTopic) || !string.IsNullOrWhiteSpace(Kafka.AggregatesTopic), "Kafka:PointsTopic", "--points-topic", Kafka.PointsTopic,
                "Kafka needs a points topic, an aggregates topic, or both.");
            Check(!string.IsNullOrWhiteSpace(Kafka.GroupId), "Kafka:GroupId", "--group", Kafka.GroupId, "must not be empty.");
            Check(Kafka.SegmentInterval >= TimeSpan.Zero && Kafka.SegmentInterval <= day, "Kafka:SegmentInterval", string.Empty, Kafka.SegmentInterval, "must be from 0 (off) to 1 day (00:00:10 by default).");
        }

        return failures;
    }

    /// <summary>Splits an http(s)://host:port URL into its host; Kestrel's wildcards (*, +) count as hosts beyond loopback.</summary>
    internal static bool TryParseListenUrl(string url, out string host, out bool https)
    {
        host = string.Empty;
        https = url.StartsWith("https://", StringComparison.OrdinalIgnoreCase);
        string rest;
        if (url.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
        {
            rest = url["http://".Length..];
        }
        else if (https)
        {
            rest = url["https://".Length..];
        }
        else
        {
            return false;
        }

        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        string authority = slash < 0 ? rest : rest[..slash];
        int colon = authority.LastIndexOf(':');
        if (colon <= 0 || authority.EndsWith(']'))
        {
            return false;
        }

        host = authority[..colon].Trim('[', ']');
        return int.TryParse(authority[(colon + 1)..], out int port) && port is >= 0 and <= 65535 && host.Length > 0;
    }

    /// <summary>Whether a listen host is loopback only (localhost, 127.0.0.0/8, ::1).</summary>
    internal static bool IsLoopback(string host) =>
        string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host, out IPAddress? address) && IPAddress.IsLoopback(address));
}
