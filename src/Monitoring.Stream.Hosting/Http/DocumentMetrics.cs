using System.Diagnostics;
using Monitoring.Stream.Hosting.Instruments;

namespace Monitoring.Stream.Hosting.Http;

/// <summary>
/// Instruments for document processing: <c>document_processing_duration_seconds</c> and
/// <c>document_size_bytes</c>, both histograms (their count is the documents processed), by
/// <c>type</c> and <c>status</c>. Document ids are never labels: each would be a series of its own.
/// </summary>
public sealed class DocumentMetrics
{
    /// <summary>The duration metric.</summary>
    public const string DurationMetric = "document_processing_duration_seconds";

    /// <summary>The size metric.</summary>
    public const string SizeMetric = "document_size_bytes";

    private readonly MetricHistogram _duration;
    private readonly MetricHistogram _size;

    /// <summary>Creates the instruments on <paramref name="collector"/>.</summary>
    public DocumentMetrics(MetricsCollector collector)
    {
        ArgumentNullException.ThrowIfNull(collector);
        _duration = collector.CreateHistogram(DurationMetric, ["type", "status"], "Time to process a document.", "s");
        _size = collector.CreateHistogram(SizeMetric, ["type", "status"], "Size of a processed document.", "By");
    }

    /// <summary>Records one processed document of <paramref name="documentType"/> (e.g. <c>invoice</c>) that ended with <paramref name="status"/> (e.g. <c>ok</c>, <c>failed</c>).</summary>
    public void Record(string documentType, string status, TimeSpan duration, long sizeBytes)
    {
        _duration.Record(duration.TotalSeconds, documentType, status);
        _size.Record(sizeBytes, documentType, status);
    }

    /// <summary>Runs <paramref name="process"/> on a document and records it: status <c>ok</c>, or <c>failed</c> when it throws (the exception propagates).</summary>
    public async Task<T> MeasureAsync<T>(string documentType, long sizeBytes, Func<Task<T>> process)
    {
        ArgumentNullException.ThrowIfNull(process);
        long start = Stopwatch.GetTimestamp();
        string status = "failed";
        try
        {
            T result = await process().ConfigureAwait(false);
            status = "ok";
            return result;
        }
        finally
        {
            Record(documentType, status, Stopwatch.GetElapsedTime(start), sizeBytes);
        }
    }
}
