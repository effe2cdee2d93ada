using System.Collections.Concurrent;
using System.Globalization;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Server.Service;

/// <summary>The service's own counters (HTTP requests, ingest refusals, points written over HTTP), for <c>/metrics</c>.</summary>
internal sealed class ServerMetrics
{
    private readonly ConcurrentDictionary<(string Route, int Status), long> _requests = new();
    private readonly ConcurrentDictionary<string, long> _refused = new(StringComparer.Ordinal);
    private readonly long[] _rejectedPoints = new long[Enum.GetValues<RejectReason>().Length + 1];
    private long _acceptedPoints;
    private long _bodyBytes;
    private long _decodedBytes;
    private long _bufferBytes;
    private IngestService? _ingest;

    /// <summary>Reasons a whole ingest request is refused, as counted.</summary>
    public static readonly IReadOnlyList<string> RefusalReasons =
        ["body_too_large", "decompressed_too_large", "malformed", "bad_gzip", "unsupported_media_type", "unsupported_encoding", "saturated", "busy", "stopping", "unauthorized", "too_slow"];

    /// <summary>Counts one answered request.</summary>
    public void CountRequest(string route, int status) => _requests.AddOrUpdate((route, status), 1, static (_, n) => n + 1);

    /// <summary>Counts one refused ingest request (or unauthorized request).</summary>
    public void CountRefused(string reason) => _refused.AddOrUpdate(reason, 1, static (_, n) => n + 1);

    /// <summary>Counts the points of one ingest request.</summary>
    public void CountPoints(int accepted, ReadOnlySpan<int> rejectedByReason)
    {
        Interlocked.Add(ref _acceptedPoints, accepted);
        for (int i = 0; i < rejectedByReason.Length && i < _rejectedPoints.Length; i++)
        {
            if (rejectedByReason[i] != 0)
            {
                Interlocked.Add(ref _rejectedPoints[i], rejectedByReason[i]);
            }
        }
    }

    /// <summary>Counts body bytes as received and as decoded.</summary>
    public void CountBytes(long received, long decoded)
    {
        Interlocked.Add(ref _bodyBytes, received);
        Interlocked.Add(ref _decodedBytes, decoded);
    }

    /// <summary>Adds <paramref name="bytes"/> (negative: returns them) to the body buffers held by ingest requests.</summary>
    public void CountBufferBytes(long bytes) => Interlocked.Add(ref _bufferBytes, bytes);

    /// <summary>Body buffer bytes ingest requests hold now.</summary>
    public long BufferBytes => Interlocked.Read(ref _bufferBytes);

    /// <summary>Where the ingest gauges (requests in flight and waiting, queue fill) are read.</summary>
    public void SetIngestGauges(IngestService ingest) => _ingest = ingest;

    /// <summary>Ingest requests refused for <paramref name="reason"/> so far.</summary>
    public long Refused(string reason) => _refused.GetValueOrDefault(reason);

    /// <summary>Writes the counters in the Prometheus text format.</summary>
    public void WriteTo(TextWriter w)
    {
        PrometheusText.Family(w, "monitoring_stream_http_requests_total", "counter", "HTTP requests answered, by route and status code.");
        foreach (((string route, int status), long n) in _requests.OrderBy(r => r.Key.Route, StringComparer.Ordinal).ThenBy(r => r.Key.Status))
        {
            PrometheusText.Sample(w, "monitoring_stream_http_requests_total", [("route", route), ("code", status.ToString(CultureInfo.InvariantCulture))], n);
        }

        PrometheusText.Family(w, "monitoring_stream_http_ingest_refused_total", "counter", "Ingest requests refused whole, by reason.");
        foreach (string reason in RefusalReasons)
        {
            PrometheusText.Sample(w, "monitoring_stream_http_ingest_refused_total", [("reason", reason)], _refused.GetValueOrDefault(reason));
        }

        PrometheusText.Family(w, "monitoring_stream_http_points_accepted_total", "counter", "Points of HTTP ingest requests that the engine accepted.");
        PrometheusText.Sample(w, "monitoring_stream_http_points_accepted_total", [], Interlocked.Read(ref _acceptedPoints));
        PrometheusText.Family(w, "monitoring_stream_http_points_rejected_total", "counter", "Points of HTTP ingest requests that the engine refused, by reason.");
        foreach (RejectReason reason in Enum.GetValues<RejectReason>())
        {
            if (reason != RejectReason.None)
            {
                PrometheusText.Sample(w, "monitoring_stream_http_points_rejected_total", [("reason", reason.ToMetricLabel())], Interlocked.Read(ref _rejectedPoints[(int)reason]));
            }
        }

        PrometheusText.Family(w, "monitoring_stream_http_ingest_received_bytes_total", "counter", "Ingest body bytes as received (compressed or not).");
        PrometheusText.Sample(w, "monitoring_stream_http_ingest_received_bytes_total", [], Interlocked.Read(ref _bodyBytes));
        PrometheusText.Family(w, "monitoring_stream_http_ingest_decoded_bytes_total", "counter", "Ingest body bytes after decompression.");
        PrometheusText.Sample(w, "monitoring_stream_http_ingest_decoded_bytes_total", [], Interlocked.Read(ref _decodedBytes));
        PrometheusText.Family(w, "monitoring_stream_http_ingest_buffer_bytes", "gauge", "Body buffer bytes that ingest requests hold now (bounded by the slots).");
        PrometheusText.Sample(w, "monitoring_stream_http_ingest_buffer_bytes", [], BufferBytes);
        if (_ingest is not null)
        {
            PrometheusText.Family(w, "monitoring_stream_http_ingest_in_flight", "gauge", "Ingest requests holding a slot now (at most Server:IngestConcurrency).");
            PrometheusText.Sample(w, "monitoring_stream_http_ingest_in_flight", [], _ingest.InFlight);
            PrometheusText.Family(w, "monitoring_stream_http_ingest_waiting", "gauge", "Ingest requests waiting for a slot now (at most Server:IngestQueueLimit).");
            PrometheusText.Sample(w, "monitoring_stream_http_ingest_waiting", [], _ingest.Waiting);
            PrometheusText.Family(w, "monitoring_stream_http_ingest_queue_fill", "gauge", "Estimated fill of the fullest shard queue as ingest admission sees it (503 saturated at Server:SaturationQueueFill).");
            PrometheusText.Sample(w, "monitoring_stream_http_ingest_queue_fill", [], _ingest.QueueFill);
        }
    }
}
