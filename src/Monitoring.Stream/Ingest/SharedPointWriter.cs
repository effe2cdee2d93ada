using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// A producer's entrance that is safe from any thread, as instruments of OpenTelemetry or
/// prometheus-net are: each thread writes through a <see cref="PointWriter"/> of its own, guarded by an
/// uncontended lock, and the engine flushes what an idle thread left buffered within the flush interval.
/// </summary>
/// <remarks>
/// Every per-thread writer counts under this writer's source name and is one source of event time.
/// The default backpressure is <see cref="BackpressureMode.DropNewest"/>: an application recording its
/// metrics is never blocked by the engine; what is dropped is counted.
/// </remarks>
public sealed class SharedPointWriter : IDisposable
{
    private readonly MetricsPipeline _pipeline;
    private readonly ThreadLocal<Slot> _local;
    private readonly List<Slot> _slots = [];
    private readonly Lock _slotsGate = new();
    private bool _disposed;

    internal SharedPointWriter(MetricsPipeline pipeline, string source, BackpressureMode mode)
    {
        _pipeline = pipeline;
        Source = source;
        Mode = mode;
        _local = new ThreadLocal<Slot>(CreateSlot);
    }

    /// <summary>The source name under which every thread's points are counted.</summary>
    public string Source { get; }

    /// <summary>What the writer does when a shard is full.</summary>
    public BackpressureMode Mode { get; }

    /// <summary>Resolves the series and writes one point stamped with the engine's clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value)
    {
        Slot slot = _local.Value!;
        lock (slot.Gate)
        {
            return slot.Writer.Write(metric, labels, value);
        }
    }

    /// <summary>Resolves the series and writes one point.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value, long timestampUnixMs)
    {
        Slot slot = _local.Value!;
        lock (slot.Gate)
        {
            return slot.Writer.Write(metric, labels, value, timestampUnixMs);
        }
    }

    /// <summary>Writes one point of a series resolved through the pipeline's registry, stamped with the engine's clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(SeriesId series, double value)
    {
        Slot slot = _local.Value!;
        lock (slot.Gate)
        {
            return slot.Writer.Write(series, value);
        }
    }

    /// <summary>Writes one point of a series resolved through the pipeline's registry.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(SeriesId series, double value, long timestampUnixMs)
    {
        Slot slot = _local.Value!;
        lock (slot.Gate)
        {
            return slot.Writer.Write(series, value, timestampUnixMs);
        }
    }

    /// <summary>Hands every thread's buffered points to the shards now.</summary>
    public void Flush() => FlushIdle(long.MaxValue, wait: true);

    /// <summary>
    /// Flushes the per-thread writers that have not flushed since <paramref name="idleSince"/> (an engine
    /// timestamp). The engine's timer passes <paramref name="wait"/> false: a thread busy writing is skipped,
    /// it flushes by itself.
    /// </summary>
    internal void FlushIdle(long idleSince, bool wait)
    {
        Slot[] slots;
        lock (_slotsGate)
        {
            slots = [.. _slots];
        }

        foreach (Slot slot in slots)
        {
            if (wait)
            {
                slot.Gate.Enter();
            }
            else if (!slot.Gate.TryEnter())
            {
                continue;
            }

            try
            {
                if (slot.Writer.IsIdleSince(idleSince))
                {
                    slot.Writer.FlushCore();
                }
            }
            finally
            {
                slot.Gate.Exit();
            }
        }
    }

    /// <summary>A graceful stop hands what each thread buffers to the shards (see <see cref="PointWriter.FlushForStop"/>).</summary>
    internal void FlushForStop()
    {
        Slot[] slots;
        lock (_slotsGate)
        {
            slots = [.. _slots];
        }

        foreach (Slot slot in slots)
        {
            if (!slot.Gate.TryEnter())
            {
                continue;
            }

            try
            {
                slot.Writer.FlushForStop();
            }
            finally
            {
                slot.Gate.Exit();
            }
        }
    }

    private Slot CreateSlot()
    {
        lock (_slotsGate)
        {
            var slot = new Slot(_pipeline.CreateWriterCore(Source, Mode, threadBound: false));
            if (_disposed)
            {
                // A thread's first write after Dispose: its writer is closed at once, so the write is refused and counted.
                slot.Writer.Dispose();
            }
            else
            {
                _slots.Add(slot);
            }

            return slot;
        }
    }

    /// <summary>Flushes and retires every thread's writer; later writes are refused as closed and counted.</summary>
    public void Dispose()
    {
        Slot[] slots;
        lock (_slotsGate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            slots = [.. _slots];
        }

        foreach (Slot slot in slots)
        {
            lock (slot.Gate)
            {
                slot.Writer.Dispose();
            }
        }

        _pipeline.Unregister(this);
    }

    private sealed class Slot(PointWriter writer)
    {
        public readonly Lock Gate = new();
        public readonly PointWriter Writer = writer;
    }
}
