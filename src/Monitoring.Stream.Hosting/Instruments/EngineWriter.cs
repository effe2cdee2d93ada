using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// The one seam between the instruments and the engine's producer API: the engine's thread-safe
/// <see cref="SharedPointWriter"/>, which stamps the engine clock when no timestamp is given and whose
/// idle buffers the engine flushes within its flush interval.
/// </summary>
internal sealed class EngineWriter : IDisposable
{
    private readonly SharedPointWriter _writer;
    private readonly TimeProvider _time;

    public EngineWriter(MetricsPipeline pipeline, string source)
    {
        Pipeline = pipeline;
        _time = pipeline.Options.TimeProvider;
        _writer = pipeline.CreateSharedWriter(source, BackpressureMode.DropNewest);
    }

    public MetricsPipeline Pipeline { get; }

    /// <summary>The engine's writer itself, for the instruments' hot paths (one indirection less per call).</summary>
    public SharedPointWriter Shared => _writer;

    public long NowUnixMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public RejectReason Write(SeriesId series, double value) => _writer.Write(series, value);

    public RejectReason Write(SeriesId series, double value, long timestampUnixMs) => _writer.Write(series, value, timestampUnixMs);

    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value) => _writer.Write(metric, labels, value);

    /// <summary>Hands every buffered point to the shards.</summary>
    public void Flush() => _writer.Flush();

    public void Dispose() => _writer.Dispose();
}
