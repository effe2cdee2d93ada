using System.Runtime.CompilerServices;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// A producer's entrance that is safe from any thread, as instruments of OpenTelemetry or
/// prometheus-net are: each thread writes through a <see cref="PointWriter"/> of its own (whose gate is
/// biased to that thread: no atomic operation per call), and the engine flushes what an idle thread left
/// buffered within the flush interval.
/// </summary>
/// <remarks>
/// Every per-thread writer counts under this writer's source name and is one source of event time.
/// The default backpressure is <see cref="BackpressureMode.DropNewest"/>: an application recording its
/// metrics is never blocked by the engine; what is dropped is counted.
/// </remarks>
public sealed class SharedPointWriter : IDisposable
{
    private readonly MetricsPipeline _pipeline;
    [ThreadStatic]
    private static Slot? s_lastSlotOfThread;

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
    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value) => CurrentWriter().Write(metric, labels, value);

    /// <summary>Resolves the series and writes one point.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value, long timestampUnixMs) => CurrentWriter().Write(metric, labels, value, timestampUnixMs);

    /// <summary>Writes one point of a series resolved through the pipeline's registry, stamped with the engine's clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(SeriesId series, double value) => CurrentWriter().Write(series, value);

    /// <summary>Writes one point of a series resolved through the pipeline's registry.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(SeriesId series, double value, long timestampUnixMs) => CurrentWriter().Write(series, value, timestampUnixMs);

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
                slot.Writer.FlushOrRetireFromAnyThread(dispose: false, wait: true, idleSince);
            }
            else
            {
                slot.Writer.FlushIfQuiet(idleSince);
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
            slot.Writer.FlushForStop();
        }
    }

    private Slot CreateSlot()
    {
        lock (_slotsGate)
        {
            var slot = new Slot(this, _pipeline.CreateWriterCore(Source, Mode, threadBound: false));
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
            slot.Writer.FlushOrRetireFromAnyThread(dispose: true, wait: true);
        }

        _pipeline.Unregister(this);
    }

    /// <summary>
    /// This thread's writer. PERF: a thread-static slot remembers the shared writer it belongs to, so the
    /// common case (one shared writer per process) costs one thread-static read and a compare instead of a
    /// <see cref="ThreadLocal{T}"/> lookup.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private PointWriter CurrentWriter()
    {
        Slot? slot = s_lastSlotOfThread;
        return slot is not null && ReferenceEquals(slot.Owner, this) ? slot.Writer : CurrentWriterSlow();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private PointWriter CurrentWriterSlow()
    {
        Slot slot = _local.Value!;
        s_lastSlotOfThread = slot;
        return slot.Writer;
    }

    private sealed class Slot(SharedPointWriter owner, PointWriter writer)
    {
        public readonly SharedPointWriter Owner = owner;
        public readonly PointWriter Writer = writer;
    }
}
