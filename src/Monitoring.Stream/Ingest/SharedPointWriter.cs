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
    /// <summary>Calls a thread makes through the thread-static lookup before it takes the hot slot over.</summary>
    private const int MissesBeforeTakeover = 64;

    private readonly MetricsPipeline _pipeline;
    [ThreadStatic]
    private static Slot? s_lastSlotOfThread;

    /// <summary>The slot of the thread that wrote most lately, recognised by its stack (see <see cref="CurrentWriter"/>).</summary>
    private Slot? _hot;

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

    /// <summary>Writes one point of the series a lookup finds (a labelled call's, a bound handle's), the lookup run inside the thread's writer (see <see cref="ISeriesLookup"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal RejectReason WriteLookedUp<TLookup>(ref TLookup lookup, double value)
        where TLookup : ISeriesLookup, allows ref struct => CurrentWriter().WriteLookedUp(ref lookup, value);

    /// <summary>The same at an explicit event time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal RejectReason WriteLookedUp<TLookup>(ref TLookup lookup, double value, long timestampUnixMs)
        where TLookup : ISeriesLookup, allows ref struct => CurrentWriter().WriteLookedUp(ref lookup, value, timestampUnixMs);

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

    /// <summary>The stop closes every thread's writer to later writes (see <see cref="PointWriter.CloseForStop"/>).</summary>
    internal void CloseForStop(Func<bool> giveUp)
    {
        Slot[] slots;
        lock (_slotsGate)
        {
            slots = [.. _slots];
        }

        foreach (Slot slot in slots)
        {
            slot.Writer.CloseForStop(giveUp);
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
                if (_pipeline.IsStopping)
                {
                    // Created while the stop began: the stop may have listed the slots before this one was added.
                    // Not yet used by its thread (this runs on that thread, before its first write).
                    slot.Writer.CloseForStop(_pipeline.IsAbortedCallback);
                }
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
    /// This thread's writer.
    /// </summary>
    /// <remarks>
    /// <para>PERF: a thread-static read is a call into the C library here (<c>__tls_get_addr</c>, with the
    /// register spills of a call around it). The hot slot, that of the thread writing most, is recognised
    /// instead by two compares on the address of a local against its thread's stack, as the writer's gate
    /// recognises its thread. Any other thread takes the thread-static slot (which remembers the shared
    /// writer it belongs to), then the <see cref="ThreadLocal{T}"/>; after <see cref="MissesBeforeTakeover"/>
    /// such calls it takes the hot slot over, so two busy threads trade it once per that many calls each.</para>
    /// <para>The hot slot is read and written without a fence: whichever slot a thread reads, it uses it only
    /// when the slot's stack holds the thread's own local. A stack is its thread's alone while the thread
    /// lives; a thread that later gets a dead thread's stack addresses may use the dead thread's writer,
    /// which nobody else can be using (the writer's gate recognises threads the same way).</para>
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private PointWriter CurrentWriter()
    {
        Slot? hot = _hot;
        return hot is not null && hot.IsCurrentThread() ? hot.Writer : CurrentWriterCold();
    }

    /// <summary>Whether the calling thread's writer is the hot slot (found without a thread-static read); for tests.</summary>
    internal bool IsHotThread => _hot?.IsCurrentThread() == true;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private PointWriter CurrentWriterCold()
    {
        Slot? slot = s_lastSlotOfThread;
        if (slot is null || !ReferenceEquals(slot.Owner, this))
        {
            slot = _local.Value!;
            s_lastSlotOfThread = slot;
        }

        if (slot.HasStack && ++slot.Misses >= MissesBeforeTakeover)
        {
            slot.Misses = 0;
            _hot = slot;
        }

        return slot.Writer;
    }

    private sealed unsafe class Slot
    {
        public readonly SharedPointWriter Owner;
        public readonly PointWriter Writer;

        /// <summary>Calls of this slot's thread that did not find it hot (touched by that thread only).</summary>
        public int Misses;

        private readonly nuint _stackLow;
        private readonly nuint _stackSize;

        /// <summary>Created on the thread the slot is for (the <see cref="ThreadLocal{T}"/>'s factory runs there).</summary>
        public Slot(SharedPointWriter owner, PointWriter writer)
        {
            Owner = owner;
            Writer = writer;
            if (ThreadStack.TryGetCurrent(out nuint low, out nuint size))
            {
                _stackLow = low;
                _stackSize = size;
            }
        }

        /// <summary>Whether the thread's stack is known, so the slot can be recognised without a thread-static read.</summary>
        public bool HasStack => _stackSize != 0;

        /// <summary>Whether the calling thread is the slot's: the address of a local lies in the slot's stack.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        [SkipLocalsInit]
        public bool IsCurrentThread()
        {
            // Neither written nor zeroed: only its address is used (see WriterGate's bias).
            byte probe;
            return (nuint)(&probe) - _stackLow < _stackSize;
        }
    }
}
