using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Threading.Channels;
using Microsoft.Extensions.ObjectPool;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// A producer's entrance to the pipeline, and one source of event time. One writer belongs to one
/// thread: it batches points per shard in pooled buffers and hands each full batch to the shard's
/// bounded channel in one operation.
/// </summary>
/// <remarks>
/// <para>For one thread at a time. Handing the writer from thread to thread between writes (async code
/// after an await) is fine; a call from a second thread while another is inside one throws
/// <see cref="InvalidOperationException"/> (counted in <see cref="PipelineMetrics.WriterMisuse"/>)
/// instead of corrupting a batch. For many threads at once use <see cref="MetricsPipeline.CreateSharedWriter"/>.</para>
/// <para>Points sit in the writer's buffers until a batch fills, <see cref="Flush"/> is called, or the
/// flush interval passes: a write notices it, and the engine's timer flushes a writer that has gone quiet.</para>
/// <para>A writer can tag what it writes with positions (<see cref="Checkpoint"/>) and learn when
/// every point before a position is accounted for (<see cref="AcknowledgedPosition"/>).</para>
/// </remarks>
public sealed class PointWriter : IDisposable
{
    private const int ClockCheckEvery = 1024;

    /// <summary>Spins on a full shard before sleeping until it has room (see <see cref="ShardSpace"/>): a few microseconds.</summary>
    private const int MaxSpins = 10;

    private readonly MetricsPipeline _pipeline;
    private readonly ChannelWriter<PointBatch>[] _channels;
    private readonly ShardSpace[] _spaces;
    private readonly ShardBell[] _bells;
    private readonly ObjectPool<PointBatch> _pool;
    private readonly PointBatch?[] _pending;
    private readonly long[] _sentSeq;
    private readonly int _shardCount;
    private readonly ulong _shardDivisor;
    private readonly int _registryTag;
    private readonly TimeProvider _time;
    private readonly long _maxFutureSkewMs;
    private readonly long _maxAgeMs;
    private readonly long _flushIntervalTicks;
    private readonly SourceCounters _counters;
    private readonly Lock _checkpointGate = new();
    private readonly Queue<(long Position, long[] Targets)> _checkpoints = new();
    /// <summary>Between the caller, the engine's timer and stop, and a second thread (see <see cref="WriterGate"/>).</summary>
    private WriterGate _gate = new();
    private long _maxTimestamp;
    private long _minTimestamp;
    private readonly long _minRepresentableMs;
    private readonly bool _systemClock;

    /// <summary>Batches started between two notes to the stamping clock (see <see cref="StampClock"/>).</summary>
    private const int BatchesPerClockNote = 8;

    private int _batchesUnnoted;
    private long _stampOffsetMs;
    private long _stampAnchorTick = long.MinValue;
    private readonly long _maxRepresentableMs;
    private readonly long _outlierGapMs;
    /// <summary>The newest timestamp written, and the newest but one (the outlier rule: see <see cref="Progress"/>).</summary>
    private long _newestEventTime = long.MinValue;
    private long _secondEventTime = long.MinValue;
    private bool _newestAheadOfClock;
    private long _clockMs;
    private long _lastFlush;

    /// <summary>When the engine's timer first kept a batch of this writer for a full shard (long.MinValue: none kept).</summary>
    private long _keptSince = long.MinValue;

    /// <summary>How long the timer keeps a DropNewest writer's batch for a full shard: SourceIdleTimeout, in timestamp ticks.</summary>
    private readonly long _keepLimitTicks;
    private int _sinceClockCheck;
    private bool _wroteSinceFlush;
    private long _lastCheckpoint = long.MinValue;
    private long _ackedPosition = -1;
    private volatile bool _disposed;

    /// <summary>Set, under the gate, as <see cref="DisposeHeld"/> begins: during a graceful stop its flush hands its points over itself.</summary>
    private bool _disposing;

    /// <summary>Set with the closed bounds (a stop or a disposal): a call that finds the engine inside is refused without waiting.</summary>
    private bool _closed;

    internal PointWriter(MetricsPipeline pipeline, string source, BackpressureMode mode, SourceCounters counters, bool threadBound = true)
    {
        _pipeline = pipeline;
        _channels = pipeline.ShardWriters;
        _spaces = pipeline.ShardSpaces;
        _bells = pipeline.ShardBells;
        _pool = pipeline.BatchPool;
        _shardCount = _channels.Length;
        // Lemire's fast division: q = high64(ceil(2^64 / d) * n) is exact for 32-bit n and d > 1.
        // For d = 1 the multiplier would be 2^64, which does not fit: 0 marks that case.
        _shardDivisor = _shardCount == 1 ? 0 : (ulong.MaxValue / (ulong)_shardCount) + 1;
        _pending = new PointBatch?[_shardCount];
        _sentSeq = new long[_shardCount];
        _registryTag = pipeline.Registry.Tag;
        MetricsPipelineSettings settings = pipeline.Settings;
        _time = settings.TimeProvider;
        _systemClock = ReferenceEquals(_time, TimeProvider.System);
        _maxFutureSkewMs = settings.MaxFutureSkewMs;
        _maxAgeMs = settings.MaxPointAgeMs;
        _minRepresentableMs = settings.MinRepresentableMs;
        _maxRepresentableMs = settings.MaxRepresentableMs;
        _outlierGapMs = settings.LatenessMs;
        _flushIntervalTicks = (long)(settings.ProducerFlushInterval.TotalSeconds * _time.TimestampFrequency);
        _keepLimitTicks = (long)(settings.SourceIdleTimeoutMs / 1000.0 * _time.TimestampFrequency);
        Source = source;
        Mode = mode;
        _counters = counters;
        IsThreadBound = threadBound;
        RefreshClock();
    }

    /// <summary>The source name under which this writer's points are counted.</summary>
    public string Source { get; }

    /// <summary>What this writer does when a shard is full.</summary>
    public BackpressureMode Mode { get; }

    internal SourceCounters Counters => _counters;

    /// <summary>False for a shared writer's per-thread writers, which the shared writer flushes and retires.</summary>
    internal bool IsThreadBound { get; }

    /// <summary>Resolves the series and writes one point stamped with the engine's clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value) =>
        Write(metric, labels, value, StampNow());

    /// <summary>Resolves the series and writes one point.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    /// <remarks>The series is looked up holding the writer's gate (see <see cref="ISeriesLookup"/>).</remarks>
    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value, long timestampUnixMs)
    {
        var lookup = new RegistryLookup(_pipeline.Registry, metric, labels);
        return WriteLookedUp(ref lookup, value, timestampUnixMs);
    }

    /// <summary>
    /// Writes one point of the series a lookup finds, the lookup run holding the gate (<see cref="ISeriesLookup"/>);
    /// a refusal of the lookup is counted here or left to the caller, as the lookup says.
    /// </summary>
    /// <remarks>PERF: no exception handler around the lookup (a method with one is not inlined: with it, and the
    /// lookup itself not inlined, a labelled SDK call cost about 2.5 ns more): <see cref="ISeriesLookup.Resolve"/>
    /// must not throw.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal RejectReason WriteLookedUp<TLookup>(ref TLookup lookup, double value, long timestampUnixMs)
        where TLookup : ISeriesLookup, allows ref struct
    {
        if (!_gate.TryEnterBiased() && !EnterForLookup())
        {
            return RefuseClosedOutsideTheGate();
        }

        if (_closed)
        {
            return RefuseClosedEntered();
        }

        RejectReason reason = lookup.Resolve(out SeriesId id);
        if (reason != RejectReason.None)
        {
            if (TLookup.RefusalsCountedByWriter)
            {
                _counters.Offered++;
                _counters.Rejected[(int)reason]++;
            }

            _gate.Exit();
            return reason;
        }

        return WriteEntered(id, value, timestampUnixMs);
    }

    /// <summary><see cref="WriteLookedUp{TLookup}(ref TLookup, double, long)"/>, stamped with the engine's clock.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal RejectReason WriteLookedUp<TLookup>(ref TLookup lookup, double value)
        where TLookup : ISeriesLookup, allows ref struct => WriteLookedUp(ref lookup, value, StampNow());

    /// <summary>
    /// Enters the gate for a run of <see cref="WriteHeld"/> calls, left with <see cref="ExitHeld"/>: for a source that
    /// resolves its ids itself and checks them inside the gate (the Kafka decoder: a message's series ids, looked up
    /// again if the registry reclaimed any since). While the gate is held the engine cannot flush this writer, so an id
    /// checked inside it cannot be retired before its point reaches the shard (see <see cref="ISeriesLookup"/>).
    /// </summary>
    /// <remarks>A stop that begins during a run waits for the gate to close the writer: the run's points are taken (kept
    /// for the stop's flush, or dropped and counted if the stop is forced) until the writer's next clock check, within
    /// 1,024 points, refuses the rest as closed; "WriterClosed, then never None again" holds from run to run.</remarks>
    /// <returns>False for a closed writer (nothing entered): its points are to be written with
    /// <see cref="Write(SeriesId, double, long)"/>, which refuses and counts them.</returns>
    /// <exception cref="InvalidOperationException">Another thread is inside a call on this writer.</exception>
    internal bool EnterHeld()
    {
        if (!_gate.TryEnterBiased() && !EnterForLookup())
        {
            return false;
        }

        if (_closed)
        {
            _gate.Exit();
            return false;
        }

        return true;
    }

    /// <summary>One point of a run entered with <see cref="EnterHeld"/>: <see cref="Write(SeriesId, double, long)"/> without entering or leaving the gate.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal RejectReason WriteHeld(SeriesId series, double value, long timestampUnixMs)
    {
        if (TakesTheSlowPath(series, value, timestampUnixMs))
        {
            return WriteSlowInRun(series, value, timestampUnixMs);
        }

        AppendAccepted(series, value, timestampUnixMs);
        return RejectReason.None;
    }

    /// <summary>A point of a held run that the caller's own lookup refused: counted for this writer's source.</summary>
    internal void RefuseHeld(RejectReason reason)
    {
        _counters.Offered++;
        _counters.Rejected[(int)reason]++;
    }

    /// <summary>Leaves the gate entered by <see cref="EnterHeld"/>.</summary>
    internal void ExitHeld() => _gate.Exit();

    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason WriteSlowInRun(SeriesId series, double value, long timestampUnixMs) => WriteSlowHeld(series, value, timestampUnixMs);

    /// <summary>A write through a lookup to a closed writer, holding the gate (which it releases): counted, refused as closed before the lookup.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason RefuseClosedEntered()
    {
        _counters.Offered++;
        _counters.Rejected[(int)RejectReason.WriterClosed]++;
        _gate.Exit();
        return RejectReason.WriterClosed;
    }

    /// <summary>Enters the gate when it was not biased to the calling thread; false for a writer closed meanwhile (nothing entered).</summary>
    /// <exception cref="InvalidOperationException">Another thread is inside a call on this writer.</exception>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool EnterForLookup()
    {
        if (_gate.EnterSlow(ref _closed, out bool closedWhileEngineInside))
        {
            return true;
        }

        if (!closedWhileEngineInside)
        {
            ThrowCalledFromTwoThreads();
        }

        return false;
    }

    /// <summary>Writes one point of a series resolved earlier through the pipeline's registry, stamped with the engine's clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(SeriesId series, double value) => Write(series, value, StampNow());

    /// <summary>Writes one point of a series resolved earlier through the pipeline's registry.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    /// <exception cref="InvalidOperationException">Another thread is inside a call on this writer.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RejectReason Write(SeriesId series, double value, long timestampUnixMs)
    {
        // PERF: two plain stores for the thread the gate is biased to (see WriterGate) make two threads
        // at once impossible, not merely unlikely, and let the engine's timer flush a quiet writer. Every
        // other path is a call that ends the write (a tail), so nothing of the point outlives a call: what does
        // is stored to the stack first, and those stores wait in line behind the point's.
        return _gate.TryEnterBiased() ? WriteEntered(series, value, timestampUnixMs) : WriteEnteringSlowly(series, value, timestampUnixMs);
    }

    /// <summary>The write when the gate was not biased to the calling thread.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason WriteEnteringSlowly(SeriesId series, double value, long timestampUnixMs)
    {
        if (!_gate.EnterSlow(ref _closed, out bool closedWhileEngineInside))
        {
            if (closedWhileEngineInside)
            {
                return RefuseClosedOutsideTheGate();
            }

            ThrowCalledFromTwoThreads();
        }

        return WriteEntered(series, value, timestampUnixMs);
    }

    /// <summary>The write, holding the gate (which it releases).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private RejectReason WriteEntered(SeriesId series, double value, long timestampUnixMs)
    {
        if (TakesTheSlowPath(series, value, timestampUnixMs))
        {
            return WriteSlow(series, value, timestampUnixMs);
        }

        AppendAccepted(series, value, timestampUnixMs);
        _gate.Exit();
        return RejectReason.None;
    }

    /// <summary>Whether a point needs <see cref="WriteSlowHeld"/>: refused, or its timestamp outside the cached bounds.</summary>
    /// <remarks>PERF: one branch covers every refusal: a foreign id, a value out of range (the magnitude test is false
    /// for NaN too), a timestamp out of bounds. A closed writer, and every writer of a stopping pipeline, has bounds no
    /// timestamp meets (see CloseBounds): the stop is not read per point, which cost two dependent loads into the
    /// pipeline a write.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TakesTheSlowPath(SeriesId series, double value, long timestampUnixMs) =>
        series.Owner != _registryTag | !(Math.Abs(value) <= PointValidator.MaxValueMagnitude) | timestampUnixMs > _maxTimestamp | timestampUnixMs < _minTimestamp;

    /// <summary>A point that passed <see cref="TakesTheSlowPath"/>: counted, its event time noted, appended (the gate is held).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AppendAccepted(SeriesId series, double value, long timestampUnixMs)
    {
        _counters.Offered++;
        if (timestampUnixMs > _secondEventTime)
        {
            NoteEventTime(timestampUnixMs);
        }

        Append(series, value, timestampUnixMs);
    }

    /// <summary>Keeps the two newest timestamps written; called only for one newer than the second newest.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void NoteEventTime(long timestampUnixMs)
    {
        if (timestampUnixMs > _newestEventTime)
        {
            _secondEventTime = _newestEventTime;
            _newestEventTime = timestampUnixMs;
            _newestAheadOfClock = timestampUnixMs > _clockMs;
        }
        else
        {
            _secondEventTime = timestampUnixMs;
        }
    }

    /// <summary>
    /// The source's event-time progress: its newest timestamp, never past the engine's clock, unless that
    /// point was stamped ahead of the clock and stands alone more than the allowed lateness ahead of the
    /// source's next newest, or is its first point (an outlier: the second newest counts until another point
    /// confirms the jump).
    /// </summary>
    private long Progress(long now)
    {
        long newest = _newestEventTime;
        long second = _secondEventTime;
        // A first point ahead of the clock has nothing to stand beside: it counts only once confirmed, and
        // until then the source has no progress (it holds the watermark, like a source that has not written).
        if (_newestAheadOfClock && (second == long.MinValue || newest - second > _outlierGapMs))
        {
            newest = second;
        }

        return Math.Min(newest, now);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Append(SeriesId series, double value, long timestampUnixMs)
    {
        uint id = (uint)series.Value;
        uint slot = _shardDivisor == 0 ? id : ShardSlot(_shardDivisor, id);
        int shard = (int)(id - (slot * (uint)_shardCount));
        PointBatch? batch = _pending[shard];
        if (batch is null)
        {
            AppendToNewBatch(shard, slot, series.Generation, value, timestampUnixMs);
            return;
        }

        int index = batch.Count++;
        IngestPoint[] points = batch.Points;
        // The gate keeps a second thread out, so the index is always in range; the array's own check stays (its
        // failure is a runtime helper the JIT knows never returns, so nothing is kept on the stack for it).
        ref IngestPoint point = ref points[index];
        // PERF: two stores instead of four. The producer's stores wait in order behind the miss on each new
        // line of the batch (the shard's core read it last), so every store a point adds holds the ones after it.
        if (Vector128.IsHardwareAccelerated && BitConverter.IsLittleEndian)
        {
            Vector128<ulong> head = Vector128.Create(slot | ((ulong)(uint)series.Generation << 32), BitConverter.DoubleToUInt64Bits(value));
            Unsafe.WriteUnaligned(ref Unsafe.As<IngestPoint, byte>(ref point), head);
        }
        else
        {
            point.Slot = (int)slot;
            point.Generation = series.Generation;
            point.Value = value;
        }

        point.TimestampUnixMs = timestampUnixMs;
        // From the locals: batch.IsFull would keep the batch alive past the stores to load it again.
        if (index + 1 == points.Length)
        {
            FlushShard(shard, NowMs(), urgent: false);
        }
        else if (++_sinceClockCheck >= ClockCheckEvery)
        {
            CheckClock();
        }
    }

    /// <summary>The first point of a new batch for <paramref name="shard"/>; a call of its own, so that the common path keeps nothing across it.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void AppendToNewBatch(int shard, uint slot, int generation, double value, long timestampUnixMs)
    {
        PointBatch batch = RentFor(shard);
        ref IngestPoint point = ref batch.Points[batch.Count++];
        point.Slot = (int)slot;
        point.Generation = generation;
        point.Value = value;
        point.TimestampUnixMs = timestampUnixMs;
        if (batch.IsFull)
        {
            FlushShard(shard, NowMs(), urgent: false);
        }
        else if (++_sinceClockCheck >= ClockCheckEvery)
        {
            CheckClock();
        }
    }

    /// <summary>The high half of the 128-bit product (Lemire's quotient).</summary>
    /// <remarks>PERF: <see cref="Math.BigMul(ulong, ulong, out ulong)"/> stores the discarded low half to the stack: one more store per point.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint ShardSlot(ulong divisor, uint id) =>
        Bmi2.X64.IsSupported ? (uint)Bmi2.X64.MultiplyNoFlags(divisor, id) : (uint)Math.BigMul(divisor, id, out _);

    /// <summary>The refusals and their counters; entered holding the gate, which it releases.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason WriteSlow(SeriesId series, double value, long timestampUnixMs)
    {
        try
        {
            return WriteSlowHeld(series, value, timestampUnixMs);
        }
        finally
        {
            Exit();
        }
    }

    private RejectReason WriteSlowHeld(SeriesId series, double value, long timestampUnixMs)
    {
        _counters.Offered++;
        RejectReason reason = RejectReason.None;
        if (_disposed || _pipeline.IsStopping)
        {
            // The stop may not have closed this writer's bounds yet (it sets the state first, then closes each
            // writer): close them now, under the gate, so that a caller told WriterClosed is never told None later.
            reason = RejectReason.WriterClosed;
            CloseBounds();
        }
        else if (series.Owner != _registryTag || !_pipeline.Registry.Owns(series))
        {
            reason = RejectReason.UnknownSeries;
        }
        else
        {
            reason = PointValidator.ValidateValue(value);
        }

        if (reason == RejectReason.None && (timestampUnixMs > _maxTimestamp || timestampUnixMs < _minTimestamp))
        {
            // The cached bounds may be stale: look at the clock before refusing.
            RefreshClock();
            if (timestampUnixMs > _maxTimestamp)
            {
                reason = RejectReason.TimestampOutOfRange;
            }
            else if (timestampUnixMs < _minTimestamp)
            {
                // Older than the allowed age, or (within it) before the window range Arrow can hold.
                bool tooOld = _clockMs >= long.MinValue + _maxAgeMs && timestampUnixMs < _clockMs - _maxAgeMs;
                reason = tooOld ? RejectReason.TimestampTooOld : RejectReason.TimestampOutOfRange;
            }
        }

        if (reason != RejectReason.None)
        {
            _counters.Rejected[(int)reason]++;
            return reason;
        }

        if (timestampUnixMs > _secondEventTime)
        {
            NoteEventTime(timestampUnixMs);
        }

        Append(series, value, timestampUnixMs);
        return RejectReason.None;
    }

    private void Enter()
    {
        if (!_gate.Enter())
        {
            ThrowCalledFromTwoThreads();
        }
    }

    private void Exit() => _gate.Exit();

    /// <summary>Another thread is inside a call: refused and counted before anything is touched.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowCalledFromTwoThreads()
    {
        Interlocked.Increment(ref _counters.Misuse);
        throw new InvalidOperationException(
            $"The PointWriter of source '{Source}' was called from two threads at once. " +
            "A PointWriter is for one thread at a time; use MetricsPipeline.CreateSharedWriter for many threads.");
    }

    /// <summary>
    /// Called by the engine's timer: if no call is under way and the writer has not flushed for the
    /// flush interval, hands its buffered points over, never waiting for a full shard (they stay
    /// buffered for the next try).
    /// </summary>
    internal void FlushIfQuiet(long idleSince)
    {
        // A hint read without the gate (a stale answer only moves the flush to the next tick): entering
        // costs the gate a process-wide barrier, so it is paid only by a writer with something to hand over.
        if (IsIdleSince(idleSince) && (_wroteSinceFlush || _counters.Buffered))
        {
            FlushOrRetireFromAnyThread(dispose: false, wait: false, idleSince);
        }
    }

    private PointBatch RentFor(int shard)
    {
        PointBatch batch = _pool.Get();
        // PERF: the batch's points are cleared before the first is written: one bulk store over its 24 KiB. A
        // pooled batch was last read by a shard, on the other core, and each of the calls' 24-byte stores into
        // such a line had to fetch it back first: the write loop then waited on its stores, and the caller's CPU
        // per call doubled whenever the shards kept up with it (the SDK's bound handle 9.8 -> 18.9 ns a call, its
        // labelled call 25.6 -> 38.3 ns, minutes apart on one build). The bulk clear takes the lines over many at
        // a time and costs well under a nanosecond a point when they are already here (docs/benchmarks.md,
        // session 10).
        batch.Points.AsSpan().Clear();
        _pending[shard] = batch;
        if (_systemClock && ++_batchesUnnoted == BatchesPerClockNote)
        {
            // Counted towards the rate that keeps the stamping clock's thread ticking: a shared add every few
            // batches, not a point.
            _batchesUnnoted = 0;
            StampClock.Default.NoteBatches(BatchesPerClockNote);
        }

        _wroteSinceFlush = true;
        _counters.Buffered = true;
        return batch;
    }

    private long NowMs() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>
    /// The engine's clock for a point written without a timestamp. PERF: on the system clock, while writers
    /// are busy, the millisecond a background thread publishes (see <see cref="StampClock"/>): one field read.
    /// When that thread is not ticking, the monotonic coarse tick (about 7 ns, 4 ms steps on this machine)
    /// plus an offset to the wall clock, taken again at least once a second; reading the wall clock itself
    /// cost about 35-50 ns a point. Any other <see cref="TimeProvider"/> (a test's fake clock) is read as is.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal long StampNow()
    {
        if (!_systemClock)
        {
            return NowMs();
        }

        long published = StampClock.Default.Read();
        return published != 0 ? published : StampFromTick();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private long StampFromTick()
    {
        long tick = Environment.TickCount64;
        // One field each, so a racing caller (refused as misuse anyway) cannot tear a pair.
        return (ulong)(tick - _stampAnchorTick) < 1000 ? tick + _stampOffsetMs : ReanchorStamp(tick);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private long ReanchorStamp(long tick)
    {
        long now = NowMs();
        _stampOffsetMs = now - tick;
        _stampAnchorTick = tick;
        return now;
    }

    private void CheckClock()
    {
        _sinceClockCheck = 0;
        RefreshClock();
        if (_time.GetTimestamp() - _lastFlush >= _flushIntervalTicks)
        {
            FlushCore();
        }
    }

    private void RefreshClock()
    {
        if (_disposed || _pipeline.IsStopping)
        {
            CloseBounds();
            return;
        }

        long now = NowMs();
        _clockMs = now;
        // Bounded by the clock's allowance and by what the Arrow timestamp[ns] window columns can hold.
        _maxTimestamp = Math.Min(now > long.MaxValue - _maxFutureSkewMs ? long.MaxValue : now + _maxFutureSkewMs, _maxRepresentableMs);
        _minTimestamp = Math.Max(now < long.MinValue + _maxAgeMs ? long.MinValue : now - _maxAgeMs, _minRepresentableMs);
    }

    /// <summary>Hands every partly filled batch to its shard, and tells idle shards how far this source has come.</summary>
    /// <exception cref="InvalidOperationException">Called from a thread that does not own the writer.</exception>
    public void Flush()
    {
        Enter();
        try
        {
            FlushCore();
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>The flush itself, for the caller (holding the gate, or a shared writer's lock) or the engine's timer.</summary>
    /// <param name="canWait">False for the engine's timer: a batch that finds its shard full stays buffered instead of waiting or being dropped.</param>
    internal void FlushCore(bool canWait = true)
    {
        long now = NowMs();
        RefreshClock();
        bool progress = _wroteSinceFlush;
        _wroteSinceFlush = false;
        for (int shard = 0; shard < _pending.Length; shard++)
        {
            if (_pending[shard] is { Count: > 0 })
            {
                FlushShard(shard, now, canWait);
            }
            else if (progress && !_pipeline.IsStopping)
            {
                SendProgress(shard, now);
            }
        }

        bool left = HoldsPoints();
        _counters.Buffered = left;
        if (!left)
        {
            _keptSince = long.MinValue;
            // After Buffered: a shard that sees the new count reads sequences published before it.
            Volatile.Write(ref _counters.ClearFlushes, _counters.ClearFlushes + 1);
        }

        _lastFlush = _time.GetTimestamp();
    }

    /// <summary>Whether the writer holds points not yet handed to a shard, and when it last flushed.</summary>
    internal bool IsIdleSince(long timestamp) => _lastFlush <= timestamp;

    /// <summary>
    /// A batch without points that carries the source's progress, so a shard this source has not written
    /// to lately still knows the source is alive and how far its event time has come. Never waits.
    /// </summary>
    private void SendProgress(int shard, long now)
    {
        PointBatch mark = _pending[shard] ?? _pool.Get();
        _pending[shard] = null;
        Stamp(mark, shard, now);
        mark.Seq = 0;
        if (_channels[shard].TryWrite(mark))
        {
            _bells[shard].Ring(urgent: true);
        }
        else
        {
            _pool.Return(mark);
        }
    }

    private void Stamp(PointBatch batch, int shard, long now)
    {
        batch.Origin = _counters;
        batch.Seq = _sentSeq[shard] + 1;
        batch.Progress = Progress(now);
        batch.SentAt = now;
    }

    /// <summary>Bounds no timestamp meets: every later write takes the slow path, which refuses it as closed.</summary>
    private void CloseBounds()
    {
        _maxTimestamp = long.MinValue;
        _minTimestamp = long.MaxValue;
        Volatile.Write(ref _closed, true);
    }

    /// <summary>
    /// A write to a closed writer while the engine holds its gate (the stop's flush, which may wait for room in a full
    /// shard): refused as <see cref="RejectReason.WriterClosed"/> at once, and counted without the gate. Only the owning
    /// thread calls a writer, and the engine's flush never touches these two counters, so nothing else writes them now.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason RefuseClosedOutsideTheGate()
    {
        Interlocked.Increment(ref _counters.Offered);
        Interlocked.Increment(ref _counters.Rejected[(int)RejectReason.WriterClosed]);
        return RejectReason.WriterClosed;
    }

    /// <summary>
    /// Called by the stop as soon as the pipeline is stopping, and by the pipeline for a writer registered while
    /// it stops: closes the writer's timestamp bounds under its gate, waiting for a call under way to end (until
    /// <paramref name="giveUp"/> says so), so that every later write takes the slow path and is refused as closed,
    /// without the fast path reading the pipeline's state. Points a call appended before that stay buffered for
    /// <see cref="FlushForStop"/>.
    /// </summary>
    internal void CloseForStop(Func<bool> giveUp)
    {
        if (!_gate.EnterEngine(giveUp))
        {
            // Given up while a call was under way (a thread stuck inside it): that call, or its writer's next clock
            // check, sees the stop; what it buffers is dropped and counted when its batch goes out (FlushShard).
            return;
        }

        try
        {
            CloseBounds();
        }
        finally
        {
            _gate.ExitEngine();
        }
    }

    /// <summary>
    /// Called by a graceful stop before the shard queues close: hands what this writer buffers to the shards,
    /// waiting for room (until the stop is forced), so points written before the stop are aggregated, not left
    /// pending. Waits for a call under way to end (until the stop is forced): after <see cref="CloseForStop"/>
    /// such a call is refused and adds nothing, so what is buffered then is all there will be.
    /// </summary>
    internal void FlushForStop()
    {
        if (!_gate.EnterEngine(_pipeline.IsAbortedCallback))
        {
            return;
        }

        try
        {
            CloseBounds();
            if (_disposed)
            {
                return;
            }

            long now = NowMs();
            for (int shard = 0; shard < _pending.Length; shard++)
            {
                if (_pending[shard] is { Count: > 0 })
                {
                    FlushShard(shard, now, canWait: true, draining: true);
                }
            }
        }
        finally
        {
            _gate.ExitEngine();
        }
    }

    // urgent: false for a batch handed over because it filled; the shard may take it with the next few (ShardBell).
    private void FlushShard(int shard, long now, bool canWait = true, bool draining = false, bool urgent = true)
    {
        PointBatch? batch = _pending[shard];
        if (batch is null)
        {
            return;
        }

        _pending[shard] = null;
        int count = batch.Count;
        if (count == 0)
        {
            _pool.Return(batch);
            return;
        }

        if (_pipeline.IsStopping && !draining)
        {
            if (_pipeline.IsAborted || _pipeline.WritersFlushed)
            {
                Drop(batch, DropReason.PipelineStopped, shard);
                return;
            }

            // Kept for the stop's flush; a writer being disposed hands it over itself after leaving its gate
            // (DisposeHeld, HandOverAfterDisposal).
            KeepForStop(shard, batch);
            return;
        }

        Stamp(batch, shard, now);
        Volatile.Write(ref _counters.SentSeq[shard], batch.Seq);
        // Counted accepted before the shard can take it (and taken back if it does not enter), so that a snapshot
        // never finds the shard holding points its writer has not counted (GetMetrics: queued never negative).
        Volatile.Write(ref _counters.Accepted, _counters.Accepted + count);
        if (_channels[shard].TryWrite(batch))
        {
            _bells[shard].Ring(urgent);
            _sentSeq[shard]++;
            if (_keptSince != long.MinValue && !HoldsPoints())
            {
                // A kept batch's age no longer counts once none is buffered.
                _keptSince = long.MinValue;
            }

            return;
        }

        if (Mode == BackpressureMode.DropNewest || !canWait)
        {
            Volatile.Write(ref _counters.Accepted, _counters.Accepted - count);
        }

        if (!canWait)
        {
            // The engine's timer: the batch stays buffered for a later pass. Dropping it at once (as a DropNewest
            // caller's own full batch is) lost points of idle threads whenever more of them than a shard's queue holds
            // had something buffered at one pass, each a batch of a few points, the shard nearly idle. But a kept batch
            // is on its way, and holds this source's watermark on every shard: a DropNewest writer keeps it for at most
            // SourceIdleTimeout (the longest a quiet source may hold windows), then drops it as before, counted.
            if (_pipeline.IsShardFaulted(shard))
            {
                Drop(batch, DropReason.ShardFault, shard);
                return;
            }

            long keptAt = _time.GetTimestamp();
            if (_keptSince == long.MinValue)
            {
                _keptSince = keptAt;
            }
            else if (Mode == BackpressureMode.DropNewest && keptAt - _keptSince >= _keepLimitTicks)
            {
                Drop(batch, DropReason.QueueFull, shard);
                return;
            }

            Volatile.Write(ref _counters.SentSeq[shard], _sentSeq[shard]);
            _pending[shard] = batch;
            _wroteSinceFlush = true;
            return;
        }

        if (Mode == BackpressureMode.DropNewest)
        {
            Drop(batch, DropReason.QueueFull, shard);
            return;
        }

        WaitAndWrite(shard, batch, draining);
        _bells[shard].Ring(urgent);
    }

    /// <summary>Whether any shard's batch holds points not yet handed over.</summary>
    private bool HoldsPoints()
    {
        foreach (PointBatch? pending in _pending)
        {
            if (pending is { Count: > 0 })
            {
                return true;
            }
        }

        return false;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitAndWrite(int shard, PointBatch batch, bool draining = false)
    {
        int count = batch.Count;
        ChannelWriter<PointBatch> channel = _channels[shard];
        // The producer chose Wait: hold this thread until the shard has room. A full shard frees a slot within
        // microseconds, so this spins a little, then sleeps until the shard has worked its queue down to half
        // (ShardSpace): no CPU spent while waiting, and the shard keeps a backlog while this thread wakes.
        // The channel's blocking write is not used: its waiter object would be the one allocation a producer
        // makes in steady state, and it wakes a writer for every slot freed.
        // Each try is stamped with the clock at that try: the shard judges a source idle by when it last handed
        // something over, and a batch that waited out a long stall of its shard is handed over now, not when the
        // wait began (with the first stamp, the first tick after the stall found this source silent for longer
        // than SourceIdleTimeout and its next in-order points late).
        var spinner = default(SpinWait);
        while (!channel.TryWrite(batch))
        {
            if (draining ? _pipeline.IsAborted || (_disposing && _pipeline.WritersFlushed) : _pipeline.IsStopping)
            {
                // Counted accepted before the first try (FlushShard): taken back, as the batch does not enter.
                Volatile.Write(ref _counters.Accepted, _counters.Accepted - count);
                if (!draining && !_pipeline.IsAborted && !_pipeline.WritersFlushed)
                {
                    KeepForStop(shard, batch);
                }
                else
                {
                    Drop(batch, DropReason.PipelineStopped, shard);
                }

                return;
            }

            if (_pipeline.IsShardFaulted(shard))
            {
                // The shard's loop has died: waiting would be for ever. The pipeline reports the fault.
                Volatile.Write(ref _counters.Accepted, _counters.Accepted - count);
                Drop(batch, DropReason.ShardFault, shard);
                return;
            }

            if (spinner.Count < MaxSpins)
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
            else if (_spaces[shard].TryWriteOrSleep(channel, batch))
            {
                break;
            }
            else
            {
                batch.SentAt = NowMs();
            }
        }

        _sentSeq[shard]++;
    }

    /// <summary>
    /// Keeps <paramref name="batch"/> buffered for the graceful stop's <see cref="FlushForStop"/> (docs/event-time.md: a
    /// call under way when the stop comes keeps its points buffered, and the stop hands them over), as the engine's
    /// timer keeps a batch that finds its shard full; and closes the bounds, so the next call is refused as closed
    /// and never appends to the kept batch, which may be full.
    /// </summary>
    private void KeepForStop(int shard, PointBatch batch)
    {
        Volatile.Write(ref _counters.SentSeq[shard], _sentSeq[shard]);
        _pending[shard] = batch;
        _wroteSinceFlush = true;
        CloseBounds();
    }

    private void Drop(PointBatch batch, DropReason reason, int shard)
    {
        Volatile.Write(ref _counters.SentSeq[shard], _sentSeq[shard]);
        _counters.Dropped[(int)reason] += batch.Count;
        _pool.Return(batch);
        // The dropped points are accounted for: checkpoints that waited for this batch wait for the one before.
        lock (_checkpointGate)
        {
            long dropped = _sentSeq[shard] + 1;
            foreach ((long _, long[] targets) in _checkpoints)
            {
                if (targets[shard] == dropped)
                {
                    targets[shard] = dropped - 1;
                }
            }
        }
    }

    /// <summary>
    /// Marks that every point written before this call belongs to <paramref name="position"/> or an
    /// earlier one (for a Kafka partition: the offset of the message just written). Positions must not
    /// decrease. Costs no flush: the points travel with the next batches.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="position"/> is below the previous one.</exception>
    public void Checkpoint(long position)
    {
        Enter();
        try
        {
            CheckpointHeld(position);
        }
        finally
        {
            Exit();
        }
    }

    private void CheckpointHeld(long position)
    {
        lock (_checkpointGate)
        {
            if (position < _lastCheckpoint)
            {
                throw new ArgumentOutOfRangeException(nameof(position), position, $"Positions must not decrease; the previous one was {_lastCheckpoint}.");
            }

            var targets = new long[_shardCount];
            for (int shard = 0; shard < targets.Length; shard++)
            {
                targets[shard] = _sentSeq[shard] + (_pending[shard] is { Count: > 0 } ? 1 : 0);
            }

            _checkpoints.Enqueue((position, targets));
            _lastCheckpoint = position;
        }
    }

    /// <summary>
    /// The highest position passed to <see cref="Checkpoint"/> all of whose points are accounted for: in
    /// windows that every sink acknowledged (written, or given up or dropped and counted), or counted as
    /// rejected, late or dropped; -1 before that. A window abandoned by a forced stop is never acknowledged.
    /// Safe from any thread.
    /// </summary>
    public long AcknowledgedPosition
    {
        get
        {
            lock (_checkpointGate)
            {
                while (_checkpoints.TryPeek(out (long Position, long[] Targets) next))
                {
                    for (int shard = 0; shard < next.Targets.Length; shard++)
                    {
                        if (Volatile.Read(ref _counters.AckedSeq[shard]) < next.Targets[shard])
                        {
                            return _ackedPosition;
                        }
                    }

                    _checkpoints.Dequeue();
                    _ackedPosition = next.Position;
                }

                return _ackedPosition;
            }
        }
    }

    /// <summary>
    /// Completes once <see cref="AcknowledgedPosition"/> reaches <paramref name="position"/>. Points still in
    /// this writer's buffers are not on their way: flush first (or use <see cref="CloseOpenWindowsAsync"/>).
    /// </summary>
    public async Task WaitForAcknowledgedAsync(long position, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task changed = _counters.AckChanged;
            if (AcknowledgedPosition >= position)
            {
                return;
            }

            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Flushes, then has every shard emit now the open windows holding this source's points (for a
    /// rebalance: the partition is about to move; for a source that commits its positions only where no
    /// emitted batch holds points from both sides: a cut). Other sources' later points for those windows, and
    /// this source's own, are not late: they go to a new emission of the same window (a higher
    /// <see cref="Sinks.WindowBatch.Sequence"/>) that a consumer merges. Returns when every shard has emitted
    /// them; acknowledgement follows when the sinks are done. After a stop it returns at once: the stop emitted
    /// every open window.
    /// </summary>
    /// <returns>
    /// Per shard, the <see cref="Sinks.WindowBatch.Sequence"/> of the last batch it had emitted once the close was
    /// done: every point this writer wrote before the call is in a batch of that shard at or below it, and a
    /// later batch of that shard holds none of them. <see cref="long.MaxValue"/> for a shard that had stopped.
    /// </returns>
    public async ValueTask<IReadOnlyList<long>> CloseOpenWindowsAsync(CancellationToken cancellationToken = default)
    {
        Enter();
        try
        {
            FlushCore();
        }
        finally
        {
            Exit();
        }

        var barriers = new Task[_shardCount];
        var closes = new PointBatch?[_shardCount];
        for (int shard = 0; shard < _shardCount; shard++)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var close = new PointBatch(0) { Kind = BatchKind.CloseSource, Origin = _counters, Barrier = done };
            try
            {
                await _channels[shard].WriteAsync(close, cancellationToken).ConfigureAwait(false);
                _bells[shard].Ring(urgent: true);
            }
            catch (System.Threading.Channels.ChannelClosedException)
            {
                // The pipeline is stopping or stopped: the stop emits every open window itself.
                barriers[shard] = Task.CompletedTask;
                continue;
            }

            closes[shard] = close;
            barriers[shard] = done.Task;
        }

        await Task.WhenAll(barriers).WaitAsync(cancellationToken).ConfigureAwait(false);
        var emittedThrough = new long[_shardCount];
        for (int shard = 0; shard < _shardCount; shard++)
        {
            emittedThrough[shard] = closes[shard] is { } close ? Volatile.Read(ref close.EmittedThrough) : long.MaxValue;
        }

        return emittedThrough;
    }

    /// <summary>Flushes what is buffered and retires the source: it stops holding back event time once its last batch is in.</summary>
    /// <exception cref="InvalidOperationException">Another thread is inside a call on this writer.</exception>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        List<(int Shard, PointBatch Batch)>? later;
        Enter();
        try
        {
            later = DisposeHeld();
        }
        finally
        {
            Exit();
        }

        HandOverAfterDisposal(later);
        if (IsThreadBound)
        {
            _pipeline.Unregister(this);
        }
    }

    /// <summary>
    /// For a shared writer, from any thread: flushes (<paramref name="dispose"/> false) or retires this
    /// per-thread writer, waiting while its thread is inside a call (microseconds), or skipping it then when
    /// <paramref name="wait"/> is false. Nothing is flushed when <paramref name="idleSince"/> is set and the
    /// writer flushed after it.
    /// </summary>
    internal void FlushOrRetireFromAnyThread(bool dispose, bool wait, long idleSince = long.MaxValue)
    {
        var spinner = default(SpinWait);
        while (!_gate.TryEnterEngine())
        {
            if (!wait)
            {
                return;
            }

            spinner.SpinOnce(sleep1Threshold: -1);
        }

        List<(int Shard, PointBatch Batch)>? later = null;
        try
        {
            if (dispose)
            {
                later = DisposeHeld();
            }
            else if (!_disposed && IsIdleSince(idleSince))
            {
                FlushCore(canWait: wait);
            }
        }
        finally
        {
            _gate.ExitEngine();
        }

        HandOverAfterDisposal(later);
    }

    /// <summary>
    /// Holding the gate: flushes and closes the writer for good. During a graceful stop that has not flushed the
    /// writers yet, the batches its shards cannot take at once are returned instead, for
    /// <see cref="HandOverAfterDisposal"/> to hand over once the gate is left, and the writer is retired after that.
    /// </summary>
    /// <remarks>
    /// The stop's own flush skips a disposed writer, so the disposal hands its points over itself. It never waits for
    /// room holding the gate: that wait held the stop's close of this writer (and with it the StopAsync call making it
    /// and a second StopAsync's signal) and the writer's own later calls for as long as a sink kept the shard full
    /// (probe 8). Outside the gate nothing else touches the batches' state: the writer is disposed, so its calls are
    /// refused and the engine's flushes skip it.
    /// </remarks>
    private List<(int Shard, PointBatch Batch)>? DisposeHeld()
    {
        if (_disposed)
        {
            return null;
        }

        _disposing = true;
        FlushCore();
        List<(int Shard, PointBatch Batch)>? later = null;
        for (int shard = 0; shard < _pending.Length; shard++)
        {
            if (_pending[shard] is { Count: > 0 } kept)
            {
                // Only a stop keeps a batch here (FlushShard): FlushCore hands every other over or drops it.
                (later ??= []).Add((shard, kept));
                _pending[shard] = null;
            }
        }

        _disposed = true;
        CloseBounds();
        if (later is null)
        {
            Retire();
        }
        else
        {
            // Under the gate: the stop's flush of this writer, which waits for the gate, comes after this, so the
            // stop sees the hand-over begun and waits for it before it closes the shard queues.
            _pipeline.DisposalHandOverBegins();
        }

        return later;
    }

    /// <summary>After <see cref="DisposeHeld"/>, outside the gate: hands the kept batches over (waiting for room until the stop has flushed every writer, or is forced), then retires the writer.</summary>
    private void HandOverAfterDisposal(List<(int Shard, PointBatch Batch)>? later)
    {
        if (later is null)
        {
            return;
        }

        try
        {
            foreach ((int shard, PointBatch batch) in later)
            {
                _pending[shard] = batch;
                FlushShard(shard, NowMs(), canWait: true, draining: true);
            }

            _counters.Buffered = false;
            Retire();
        }
        finally
        {
            _pipeline.DisposalHandOverEnds();
        }
    }

    private void Retire()
    {
        for (int shard = 0; shard < _sentSeq.Length; shard++)
        {
            _counters.FinalSeq[shard] = _sentSeq[shard];
        }

        _counters.Retired = true;
    }
}
