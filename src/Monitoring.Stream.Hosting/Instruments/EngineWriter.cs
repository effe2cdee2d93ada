using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// The one seam between the instruments and the engine's producer API: a thread-safe writer that
/// stamps the engine clock when no timestamp is given and flushes buffered points of an idle
/// producer on the engine's flush interval.
/// </summary>
/// <remarks>
/// Until the core's shared writer lands, this serialises a <see cref="PointWriter"/> (which belongs
/// to one thread) behind a lock; the lock is uncontended in the common case and held for a few
/// nanoseconds. Swapping in <c>MetricsPipeline.CreateSharedWriter</c> changes this class only.
/// </remarks>
internal sealed class EngineWriter : IDisposable
{
    private readonly Lock _gate = new();
    private readonly PointWriter _writer;
    private readonly TimeProvider _time;
    private readonly ITimer _flushTimer;
    private bool _disposed;

    public EngineWriter(MetricsPipeline pipeline, string source)
    {
        Pipeline = pipeline;
        _time = pipeline.Options.TimeProvider;
        _writer = pipeline.CreateWriter(source, BackpressureMode.DropNewest);
        TimeSpan interval = pipeline.Options.ProducerFlushInterval;
        _flushTimer = _time.CreateTimer(static s => ((EngineWriter)s!).Flush(), this, interval, interval);
    }

    public MetricsPipeline Pipeline { get; }

    public long NowUnixMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public RejectReason Write(SeriesId series, double value) => Write(series, value, NowUnixMs);

    public RejectReason Write(SeriesId series, double value, long timestampUnixMs)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return RejectReason.None;
            }

            return _writer.Write(series, value, timestampUnixMs);
        }
    }

    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value, long timestampUnixMs)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return RejectReason.None;
            }

            return _writer.Write(metric, labels, value, timestampUnixMs);
        }
    }

    /// <summary>Hands every buffered point to the shards.</summary>
    public void Flush()
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                _writer.Flush();
            }
        }
    }

    public void Dispose()
    {
        _flushTimer.Dispose();
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _writer.Dispose();
        }
    }
}
