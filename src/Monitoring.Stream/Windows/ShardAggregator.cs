using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.ObjectPool;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Series;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Windows;

/// <summary>
/// The single consumer of one shard's channel. It owns the window states of its series (those with
/// <c>id % shardCount == index</c>, at slot <c>id / shardCount</c>), so aggregation takes no lock.
/// </summary>
/// <remarks>
/// <para>Windows are tumbling and aligned to the epoch. Each source (a writer) carries its own event-time
/// progress: its newest timestamp, capped at the engine's clock when it handed a batch over. The
/// watermark is the minimum progress over the active sources, minus the allowed lateness, and never goes
/// back. A source that has handed nothing over for the idle timeout (by the engine's clock, compared
/// between the stamps the source and the tick carry, so a stalled shard or thread pool does not make
/// anyone idle), or that was disposed and whose last batch is in, stops holding the watermark; when no
/// source is active the clock moves it. A window closes once the watermark reaches its end; a point whose
/// window has closed is late, counted per metric and per source.</para>
/// <para>A failure while aggregating one batch is contained: the batch's points not yet aggregated are
/// counted as lost to a fault, the exception is kept for the pipeline to report, and the loop goes on.</para>
/// <para>Acknowledgements: a source's batch is acknowledged once every window it touched, and every
/// window before those, has been emitted and every sink is done with it (see <see cref="PointWriter.Checkpoint"/>).</para>
/// </remarks>
internal sealed class ShardAggregator
{
    private readonly int _index;
    private readonly int _shardCount;
    private readonly ChannelReader<PointBatch> _reader;
    private readonly ShardSpace _space;
    private readonly ShardBell _bell;
    private readonly ObjectPool<PointBatch> _pool;
    private readonly SeriesRegistry _registry;
    private readonly long _windowMs;
    private readonly long _latenessMs;
    private readonly long _idleTimeoutMs;
    private readonly long _seriesIdleMs;
    private readonly TimeProvider _time;
    private readonly bool _withSketches;
    private readonly double _relativeAccuracy;
    private readonly int _maxBins;
    private readonly Func<WindowBuffer, int, long, Action<Sinks.WindowBatch, bool>, ValueTask> _emit;
    private readonly Func<SourceCounters[]> _liveSources;
    private readonly Func<SourceCounters[]> _allSources;
    private readonly HashSet<int> _unlistedSlots = [];
    private readonly List<Retirement> _retirements = [];
    private SourceCounters[]? _knownLiveSources;
    private readonly ConcurrentDictionary<string, long> _lateByMetric;
    private readonly List<WindowBuffer> _open = [];
    private readonly Stack<WindowBuffer> _free = new();
    private readonly Stack<Statistics.DdSketch> _sketchPool = new();
    private readonly Dictionary<SourceCounters, ShardSource> _sources = new(ReferenceEqualityComparer.Instance);
    private readonly Lock _ackGate = new();
    private readonly List<InflightWindow> _inflight = [];
    /// <summary>How many points ahead a point's sketch counter is fetched.</summary>
    private const int IndexLead = 4;

    /// <summary>Slots a shard must know before it prefetches window state ahead (4,096 series' moments and sketches: about 1 MiB).</summary>
    private const int PrefetchFromSlots = 4096;

    /// <summary>The bin indices of the batch being aggregated (grown to the largest batch seen).</summary>
    private int[] _binIndex = [];

    /// <summary>A sketch of the shard's accuracy, used only to compute a batch's bin indices; null without sketches.</summary>
    private readonly DdSketch? _mapping;
    private const int MaxFreeWindows = 2;

    /// <summary>Windows whose size sets what the sketch pool keeps.</summary>
    private const int RecentWindows = 8;
    private readonly int[] _recentTouched = new int[RecentWindows];
    private int[] _slotGeneration = new int[64];
    private long[] _lastActive = new long[64];
    private long _lastReclaimScan;
    private long _heldBytes;
    private WindowBuffer? _current;
    private long _watermark = long.MinValue;
    private long _minOpenEnd = long.MaxValue;
    private long _openBytes;
    private long _spareBytes;
    private long _sketchPoolBytes;
    private long _pooledSketches;
    private long _slotBytes;
    private long _emitSequence;
    private long _faultedPoints;
    private long _faults;
    private Exception? _lastFault;
    private volatile bool _dead;
    private ShardCounters _counters;
    private long _deferredTick = long.MinValue;

    public ShardAggregator(
        int index,
        int shardCount,
        ChannelReader<PointBatch> reader,
        ShardSpace space,
        ShardBell bell,
        ObjectPool<PointBatch> pool,
        SeriesRegistry registry,
        MetricsPipelineSettings settings,
        ConcurrentDictionary<string, long> lateByMetric,
        Func<SourceCounters[]> liveSources,
        Func<SourceCounters[]> allSources,
        Func<WindowBuffer, int, long, Action<Sinks.WindowBatch, bool>, ValueTask> emit)
    {
        _index = index;
        _shardCount = shardCount;
        _reader = reader;
        _space = space;
        _bell = bell;
        _pool = pool;
        _registry = registry;
        _windowMs = settings.WindowMs;
        _latenessMs = settings.LatenessMs;
        _idleTimeoutMs = settings.SourceIdleTimeoutMs;
        _seriesIdleMs = settings.SeriesIdleTimeoutMs;
        _time = settings.TimeProvider;
        _withSketches = settings.Sketches;
        _relativeAccuracy = settings.RelativeAccuracy;
        _maxBins = settings.MaxBins;
        _mapping = _withSketches ? new DdSketch(_relativeAccuracy, _maxBins) : null;
        _lateByMetric = lateByMetric;
        _liveSources = liveSources;
        _allSources = allSources;
        _emit = emit;
    }

    public long Aggregated => Volatile.Read(ref _counters.Aggregated);

    public long Late => Volatile.Read(ref _counters.Late);

    public long EmittedPoints => Volatile.Read(ref _counters.EmittedPoints);

    public long WindowsEmitted => Volatile.Read(ref _counters.WindowsEmitted);

    /// <summary>Points refused because their series was reclaimed after they were written (or their id is older than the reclaim).</summary>
    public long Stale => Volatile.Read(ref _counters.Stale);

    /// <summary>Bytes the shard holds for its series: open and spare windows with their sketches, and per-series arrays; as of the last tick.</summary>
    public long HeldBytes => Volatile.Read(ref _heldBytes);

    /// <summary>Points lost to a fault while aggregating or emitting.</summary>
    public long FaultedPoints => Interlocked.Read(ref _faultedPoints);

    /// <summary>Faults contained so far.</summary>
    public long Faults => Interlocked.Read(ref _faults);

    /// <summary>The last fault contained or the one that ended the loop.</summary>
    public Exception? LastFault => Volatile.Read(ref _lastFault);

    /// <summary>Whether the shard's loop has ended on an exception it could not contain.</summary>
    public bool IsDead => _dead;

    public long Watermark => Volatile.Read(ref _watermark);

    /// <summary>Bytes held by the open windows' states, as of the last tick.</summary>
    public long OpenStateBytes => Volatile.Read(ref _openBytes);

    /// <summary>Bytes of the window buffers kept for later windows, as of the last tick.</summary>
    public long SpareWindowBytes => Volatile.Read(ref _spareBytes);

    /// <summary>Bytes of the cleared sketches kept for later windows, as of the last tick.</summary>
    public long SketchPoolBytes => Volatile.Read(ref _sketchPoolBytes);

    /// <summary>Sketches kept for later windows, as of the last tick.</summary>
    public long PooledSketches => Volatile.Read(ref _pooledSketches);

    /// <summary>Bytes of the per-slot arrays outside windows and of the batch's bin indices, as of the last tick.</summary>
    public long SlotBytes => Volatile.Read(ref _slotBytes);

    /// <summary>
    /// A clock tick that found this shard's channel full (an overloaded shard): it is applied once the shard
    /// reaches a batch handed over after it, the place the tick would have had in the channel. Without it a
    /// shard whose channel is full at every tick never retires an idle or disposed source, and the watermark
    /// stays where that source left it.
    /// </summary>
    public void DeferTick(long tickAt) => Volatile.Write(ref _deferredTick, tickAt);

    /// <summary>Sources currently holding the watermark back.</summary>
    public int ActiveSources { get; private set; }

    public async Task RunAsync()
    {
        try
        {
            while (true)
            {
                _bell.BeforeDrain();
                while (_reader.TryRead(out PointBatch? batch))
                {
                    _space.OnTaken(_reader);
                    await ProcessAsync(batch).ConfigureAwait(false);
                }

                if (_reader.Completion.IsCompleted)
                {
                    break;
                }

                // Woken at once for what must not wait, for full batches only once a few are queued (ShardBell).
                await _bell.WaitAsync().ConfigureAwait(false);
            }

            // The channel is complete: the pipeline is stopping, so every open window goes out now.
            while (_open.Count > 0)
            {
                await EmitAsync(_open[0]).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            // Not containable (the per-batch guard failed itself): the pipeline reports it, writers stop waiting.
            Volatile.Write(ref _lastFault, e);
            _dead = true;
            throw;
        }
    }

    private async ValueTask ProcessAsync(PointBatch batch)
    {
        switch (batch.Kind)
        {
            case BatchKind.Points:
                long aggregatedBefore = _counters.Aggregated;
                long lateBefore = _counters.Late;
                long openBefore = OpenPoints();
                try
                {
                    long maxEnd = Aggregate(batch);
                    if (batch.Origin is not null)
                    {
                        OnSourceBatch(batch, maxEnd);
                    }
                }
                catch (Exception e)
                {
                    // What reached a window stays there and is counted as aggregated; the rest is lost, and counted.
                    long added = OpenPoints() - openBefore;
                    Volatile.Write(ref _counters.Aggregated, aggregatedBefore + added);
                    long lost = Math.Max(0, batch.Count - added - (_counters.Late - lateBefore));
                    RecordFault(e, lost);
                    if (batch.Origin is not null && batch.Seq > 0)
                    {
                        OnSourceBatch(batch, _current?.End ?? long.MinValue);
                    }
                }

                long deferredTick = Volatile.Read(ref _deferredTick);
                bool tickDue = deferredTick != long.MinValue && batch.SentAt >= deferredTick
                    && Interlocked.CompareExchange(ref _deferredTick, long.MinValue, deferredTick) == deferredTick;
                _pool.Return(batch);
                if (tickDue)
                {
                    OnTick(deferredTick);
                }

                await CloseDueAsync().ConfigureAwait(false);
                break;
            case BatchKind.Tick:
                OnTick(batch.SentAt);
                await CloseDueAsync().ConfigureAwait(false);
                break;
            case BatchKind.Barrier:
                batch.Barrier?.TrySetResult();
                break;
            case BatchKind.CloseSource:
                await CloseSourceAsync(batch.Origin!).ConfigureAwait(false);
                batch.EmittedThrough = _emitSequence;
                batch.Barrier?.TrySetResult();
                break;
        }
    }

    private long OpenPoints()
    {
        long points = 0;
        foreach (WindowBuffer w in _open)
        {
            points += w.Points;
        }

        return points;
    }

    private void RecordFault(Exception e, long lostPoints)
    {
        Interlocked.Add(ref _faultedPoints, lostPoints);
        Interlocked.Increment(ref _faults);
        Volatile.Write(ref _lastFault, e);
    }

    /// <summary>Aggregates a batch; returns the largest end of the windows it may have touched.</summary>
    private long Aggregate(PointBatch batch)
    {
        if ((uint)batch.Count > (uint)batch.Points.Length)
        {
            throw new InvalidOperationException($"A batch claims {batch.Count} points in a buffer of {batch.Points.Length}: a writer was used by two threads at once.");
        }

        // Only windows this batch's points went into count for maxEnd: a batch of late or stale points touches none,
        // and is acknowledged as soon as the source's earlier windows are.
        ReadOnlySpan<IngestPoint> points = batch.Points.AsSpan(0, batch.Count);
        // PERF: the batch's sketch bin indices (a logarithm each) are computed first, four values a vector
        // step; each point's counter is then fetched IndexLead points ahead, so its update waits on neither.
        DdSketch? mapping = _mapping;
        int[] binIndex = _binIndex;
        if (binIndex.Length < points.Length)
        {
            binIndex = _binIndex = new int[batch.Points.Length];
        }

        // Without sketches the indices are not computed, and not used.
        mapping?.MagnitudeIndicesOf(points, binIndex);

        // PERF: the hints ahead pay only once the shard's state outgrows the core's own caches; below that, their
        // loads and branches (about 70 instructions a point) only crowd the out-of-order window that lets one
        // point's update overlap the next one's. Two copies of the loop, one without any hint.
        (long maxEnd, long aggregated) = _slotGeneration.Length > PrefetchFromSlots
            ? AggregateInRuns<WithHints>(batch, points, binIndex)
            : AggregateInRuns<WithoutHints>(batch, points, binIndex);
        Volatile.Write(ref _counters.Aggregated, _counters.Aggregated + aggregated);
        return maxEnd;
    }

    /// <summary>
    /// One point into its window, whatever it needs: its slot's generation checked (a stale id counted), its window
    /// selected or opened (a late point counted), the window grown, its sketch taken or widened. Returns the end
    /// of the window it went into (<see cref="long.MinValue"/> if none) and whether it was aggregated.
    /// </summary>
    private (long MaxEnd, long Aggregated) AggregateOne(PointBatch batch, ReadOnlySpan<IngestPoint> points, int[] binIndex, int k)
    {
        ref readonly IngestPoint point = ref points[k];
        int slot = point.Slot;
        if ((uint)slot >= (uint)_slotGeneration.Length)
        {
            GrowSlots(slot + 1);
        }

        if (point.Generation != _slotGeneration[slot])
        {
            // Written through an id of a series reclaimed since: its index may belong to another series now.
            CountStale();
            return (long.MinValue, 0);
        }

        long ts = point.TimestampUnixMs;
        WindowBuffer? window = _current;
        if (window is null || ts < window.Start || ts >= window.End)
        {
            window = SelectWindow(ts);
            if (window is null)
            {
                CountLate(slot, batch.Origin);
                return (long.MinValue, 0);
            }

            _current = window;
        }

        if (slot >= window.Capacity)
        {
            window.Grow(slot + 1);
        }

        window.Add(slot, point.Value, ts, binIndex[k]);
        return (window.End, 1);
    }

    /// <summary>
    /// The points of a batch into their windows: runs of points that need nothing but their updates in place
    /// go through <see cref="AggregateRun"/> (with prefetch hints ahead when <typeparamref name="THints"/> says so); each point
    /// that ends a run (a stale id, another window, a series' first point in the window, a sketch counter to
    /// widen, a bin outside its array, a value not above zero) takes the general loop alone, then a new run starts.
    /// </summary>
    private (long MaxEnd, long Aggregated) AggregateInRuns<THints>(PointBatch batch, ReadOnlySpan<IngestPoint> points, int[] binIndex)
        where THints : struct, IHintChoice
    {
        long aggregated = 0;
        long maxEnd = long.MinValue;
        int k = 0;
        while (k < points.Length)
        {
            WindowBuffer? window = _current;
            if (window is not null)
            {
                int stop = AggregateRun<THints>(window, _slotGeneration, points, binIndex, k);
                if (stop > k)
                {
                    aggregated += stop - k;
                    maxEnd = Math.Max(maxEnd, window.End);
                    k = stop;
                    if (k == points.Length)
                    {
                        break;
                    }
                }
            }

            (long oneEnd, long one) = AggregateOne(batch, points, binIndex, k);
            maxEnd = Math.Max(maxEnd, oneEnd);
            aggregated += one;
            k++;
        }

        return (maxEnd, aggregated);
    }

    /// <summary>
    /// Aggregates points from <paramref name="k"/> on into <paramref name="window"/> while each is an update
    /// in place: an id of its slot's generation, a timestamp inside the window, a series already in it, and a
    /// positive value whose sketch bin is inside its array with room in its counter. Returns the index of
    /// the first point that is not (nothing of it changed), or the end.
    /// </summary>
    /// <remarks>
    /// PERF: no call in this loop, only throw helpers. The general loop has calls on its rare paths (a window
    /// to select, a sketch to take or widen, a series' first point, counters of refusals); with only five
    /// registers that survive a call, the JIT kept most of its state on the stack, and a point's update spent
    /// a fifth of its instructions loading and storing it again (the shard's tier-1 listing, session 11).
    /// </remarks>
    private static int AggregateRun<THints>(WindowBuffer window, int[] generations, ReadOnlySpan<IngestPoint> points, int[] binIndex, int k)
        where THints : struct, IHintChoice
    {
        long start = window.Start;
        long end = window.End;
        RunningMoments[] moments = window.Moments;
        DdSketch?[] sketches = window.Sketches;
        bool withSketches = window.WithSketches;
        for (; k < points.Length; k++)
        {
            if (THints.On)
            {
                // PERF: with many series every point misses the caches on its window state and sketch counter;
                // asking for them a few points ahead overlaps those misses (hints only: never a fault).
                if (withSketches && k + IndexLead < points.Length)
                {
                    PrefetchBinAhead(window, points, k + IndexLead, binIndex);
                }

                PrefetchAhead(window, points, k);
            }

            ref readonly IngestPoint point = ref points[k];
            int slot = point.Slot;
            long ts = point.TimestampUnixMs;
            if ((uint)slot >= (uint)generations.Length || point.Generation != generations[slot]
                || ts < start || ts >= end || (uint)slot >= (uint)moments.Length)
            {
                break;
            }

            ref RunningMoments m = ref moments[slot];
            if (m.Count == 0)
            {
                // The series' first point in this window: listed as touched by the general path.
                break;
            }

            double value = point.Value;
            // The sketch first: when it cannot take the value in place, nothing has changed yet.
            if (withSketches && (sketches[slot] is not DdSketch sketch || !sketch.TryAddInPlace(value, binIndex[k])))
            {
                break;
            }

            m.AddToStarted(value, ts);
            window.Points++;
        }

        return k;
    }

    /// <summary>Whether <see cref="AggregateRun"/> prefetches window state ahead: a constant of each copy of the loop.</summary>
    private interface IHintChoice
    {
        static abstract bool On { get; }
    }

    private readonly struct WithHints : IHintChoice
    {
        public static bool On => true;
    }

    private readonly struct WithoutHints : IHintChoice
    {
        public static bool On => false;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void GrowSlots(int slots)
    {
        int capacity = Math.Max(slots, _slotGeneration.Length * 2);
        Array.Resize(ref _slotGeneration, capacity);
        Array.Resize(ref _lastActive, capacity);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void CountStale() => Volatile.Write(ref _counters.Stale, _counters.Stale + 1);

    /// <summary>Hints the counter that point <paramref name="ahead"/> will increment.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchBinAhead(WindowBuffer? window, ReadOnlySpan<IngestPoint> points, int ahead, int[] binIndex)
    {
        ref readonly IngestPoint point = ref points[ahead];
        // The window of the point being aggregated: the usual case, and only a hint when it is not.
        if (window is not null && (uint)point.Slot < (uint)window.Sketches.Length)
        {
            window.Sketches[point.Slot]?.PrefetchBin(point.Value, binIndex[ahead]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchAhead(WindowBuffer window, ReadOnlySpan<IngestPoint> points, int k)
    {
        if (k + 8 < points.Length)
        {
            int slot = points[k + 8].Slot;
            if ((uint)slot < (uint)window.Capacity)
            {
                Prefetch.Element(window.Moments, slot);
                if (window.Sketches.Length > 0)
                {
                    Prefetch.Object(window.Sketches[slot]);
                }
            }
        }
    }

    /// <summary>The open window for <paramref name="ts"/>, opening it if needed, or null when it has closed.</summary>
    /// <remarks>Writers refuse timestamps beyond their age and skew bounds, so <c>end</c> cannot overflow; the checks guard it anyway.</remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private WindowBuffer? SelectWindow(long ts)
    {
        long start = WindowStartOf(ts, _windowMs);
        long end = start > long.MaxValue - _windowMs ? long.MaxValue : start + _windowMs;
        if (end <= _watermark)
        {
            return null;
        }

        int i = 0;
        for (; i < _open.Count; i++)
        {
            if (_open[i].Start == start)
            {
                return _open[i];
            }

            if (_open[i].Start > start)
            {
                break;
            }
        }

        WindowBuffer window = _free.Count > 0
            ? _free.Pop()
            : new WindowBuffer(Math.Max(64, _registry.Count / _shardCount + 1), _withSketches, _relativeAccuracy, _maxBins, _sketchPool);
        window.Start = start;
        window.End = end;
        lock (_ackGate)
        {
            _open.Insert(i, window);
            Volatile.Write(ref _minOpenEnd, _open[0].End);
        }

        return window;
    }

    /// <summary>
    /// The start of the epoch-aligned window of <paramref name="ts"/>: floor division, exact wherever that start
    /// is a <see cref="long"/>. Only the partial first window of the range starts below <see cref="long.MinValue"/>
    /// (out of the writers' bounds): its start is clamped to <see cref="long.MinValue"/>, so it still contains its point.
    /// </summary>
    internal static long WindowStartOf(long ts, long windowMs)
    {
        long remainder = ts % windowMs;
        if (remainder >= 0)
        {
            return ts - remainder;
        }

        // Toward zero first (cannot overflow), then one window down unless that passes long.MinValue.
        long truncated = ts - remainder;
        return truncated < long.MinValue + windowMs ? long.MinValue : truncated - windowMs;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void CountLate(int slot, SourceCounters? origin)
    {
        Volatile.Write(ref _counters.Late, _counters.Late + 1);
        if (origin is not null)
        {
            Interlocked.Increment(ref origin.Late);
        }

        string metric = _registry.GetDescriptor(new SeriesId((slot * _shardCount) + _index)).Metric;
        _lateByMetric.AddOrUpdate(metric, 1, static (_, n) => n + 1);
    }

    private ShardSource GetSource(SourceCounters counters)
    {
        if (!_sources.TryGetValue(counters, out ShardSource? source))
        {
            source = new ShardSource(counters) { LastSeen = counters.CreatedAtMs };
            lock (_ackGate)
            {
                _sources.Add(counters, source);
            }
        }

        return source;
    }

    /// <summary>
    /// Registers the sources created since this shard last looked (one reference compare when there are none),
    /// so a source holds the watermark from its creation on, not from its first batch here: otherwise the
    /// batches of the others (another Kafka partition read first) could close the windows its points belong to.
    /// A retired source needs no hold.
    /// </summary>
    private void NoticeNewSources()
    {
        SourceCounters[] live = _liveSources();
        if (ReferenceEquals(live, _knownLiveSources))
        {
            return;
        }

        _knownLiveSources = live;
        foreach (SourceCounters counters in live)
        {
            if (!counters.Retired)
            {
                GetSource(counters);
            }
        }
    }

    private void OnSourceBatch(PointBatch batch, long maxEnd)
    {
        NoticeNewSources();
        ShardSource source = GetSource(batch.Origin!);
        source.Idle = false;
        source.LastSeen = Math.Max(source.LastSeen, batch.SentAt);
        source.Progress = Math.Max(source.Progress, batch.Progress);
        if (batch.Seq > 0)
        {
            source.ProcessedSeq = batch.Seq;
            source.MaxWindowEnd = Math.Max(source.MaxWindowEnd, maxEnd);
            lock (_ackGate)
            {
                source.Pending.Enqueue((batch.Seq, source.MaxWindowEnd));
                SweepLocked(source, MinPendingEndLocked());
            }
        }

        AdvanceWatermark(clock: null);
    }

    /// <summary>
    /// Raises the watermark to the slowest active source's progress minus the lateness, or, with no
    /// active source, to the clock minus the lateness (only on a tick: <paramref name="clock"/>).
    /// </summary>
    private void AdvanceWatermark(long? clock)
    {
        long slowest = long.MaxValue;
        int active = 0;
        foreach (ShardSource source in _sources.Values)
        {
            if (!source.Idle)
            {
                active++;
                slowest = Math.Min(slowest, source.Progress);
            }
        }

        ActiveSources = active;
        long candidate;
        if (active > 0)
        {
            candidate = slowest;
        }
        else if (clock is long now)
        {
            candidate = now;
        }
        else
        {
            return;
        }

        candidate = candidate < long.MinValue + _latenessMs ? long.MinValue : candidate - _latenessMs;
        if (candidate > _watermark)
        {
            Volatile.Write(ref _watermark, candidate);
        }
    }

    private void OnTick(long tickAt)
    {
        // Sources created since the last tick hold the watermark from their creation on, so a replay that
        // starts a moment after its writer was created is not late.
        foreach (SourceCounters live in _liveSources())
        {
            GetSource(live);
        }

        List<SourceCounters>? forget = null;
        foreach (ShardSource source in _sources.Values)
        {
            SourceCounters c = source.Counters;
            bool drained = c.Retired && source.ProcessedSeq >= Volatile.Read(ref c.FinalSeq[_index]);
            // Not idle while points are on their way: buffered in the writer, or handed over and still queued behind this tick.
            bool inFlight = c.Buffered || source.ProcessedSeq < Volatile.Read(ref c.SentSeq[_index]);
            if (drained || (tickAt - source.LastSeen > _idleTimeoutMs && !inFlight))
            {
                source.Idle = true;
            }

            if (drained && source.Pending.Count == 0)
            {
                (forget ??= []).Add(c);
            }
        }

        if (forget is not null)
        {
            lock (_ackGate)
            {
                foreach (SourceCounters c in forget)
                {
                    if (_sources[c].Pending.Count == 0)
                    {
                        _sources.Remove(c);
                    }
                }
            }
        }

        AdvanceWatermark(tickAt);
        if (_seriesIdleMs != long.MaxValue && tickAt - _lastReclaimScan >= Math.Min(_seriesIdleMs / 4, 60_000))
        {
            _lastReclaimScan = tickAt;
            ReclaimIdleSeries();
        }

        AdvanceRetirements();

        PublishMemory();
    }

    /// <summary>Counts what the shard holds, by part, for <see cref="MetricsPipeline.GetMetrics"/> (on the shard's thread, at each tick).</summary>
    private void PublishMemory()
    {
        long open = 0;
        foreach (WindowBuffer w in _open)
        {
            open += w.EstimateBytes();
        }

        long spare = 0;
        foreach (WindowBuffer w in _free)
        {
            spare += w.EstimateBytes();
        }

        long pool = 0;
        foreach (Statistics.DdSketch sketch in _sketchPool)
        {
            pool += sketch.EstimatedBytes;
        }

        // With the batch's bin indices (one int per point of the largest batch seen).
        long slots = ((long)_slotGeneration.Length * (sizeof(int) + sizeof(long))) + ((long)_binIndex.Length * sizeof(int));
        Volatile.Write(ref _openBytes, open);
        Volatile.Write(ref _spareBytes, spare);
        Volatile.Write(ref _sketchPoolBytes, pool);
        Volatile.Write(ref _pooledSketches, _sketchPool.Count);
        Volatile.Write(ref _slotBytes, slots);
        Volatile.Write(ref _heldBytes, open + spare + pool + slots);
    }

    /// <summary>
    /// Phase one of reclaiming the series of this shard that had no point for the series idle timeout (behind
    /// the watermark) and are in no open window: they leave the registry's lookup table (a later lookup of
    /// their labels gets a fresh id), but their ids stay valid for points already on their way. Phase two
    /// (<see cref="AdvanceRetirements"/>) retires them once nothing sent before can still arrive.
    /// </summary>
    private void ReclaimIdleSeries()
    {
        if (_watermark == long.MinValue || _watermark < long.MinValue + _seriesIdleMs)
        {
            return;
        }

        DateSeriesWithoutPoints();
        long threshold = _watermark - _seriesIdleMs;
        List<int>? unlisted = null;
        for (int slot = 0; slot < _lastActive.Length; slot++)
        {
            long last = _lastActive[slot];
            if (last == 0 || last > threshold || _unlistedSlots.Contains(slot) || InOpenWindow(slot))
            {
                continue;
            }

            _lastActive[slot] = 0;
            if (_registry.Unlist(IdOf(slot, _slotGeneration[slot])))
            {
                _unlistedSlots.Add(slot);
                (unlisted ??= []).Add(slot);
            }
        }

        if (unlisted is not null)
        {
            // Taken after the unlisting (the registry's lock orders it): every source that may still send
            // points resolved before it. A source created later can only hold an id kept from before (a bound
            // handle), whose points count as stale once the id is retired.
            _retirements.Add(new Retirement(unlisted, _allSources(), _index));
        }
    }

    /// <summary>
    /// Dates, at the current watermark, this shard's listed series that no emitted window has dated: interned but
    /// never aggregated here (a handle bound and never written, a label set whose every point was refused or
    /// late). Without a date they were never reclaimed, and held their place under the metric's series limit for
    /// good; with one, they are reclaimed like any series once idle for the timeout from their first scan.
    /// </summary>
    private void DateSeriesWithoutPoints()
    {
        int issued = _registry.Count;
        int slots = issued > _index ? ((issued - _index - 1) / _shardCount) + 1 : 0;
        if (slots > _slotGeneration.Length)
        {
            GrowSlots(slots);
        }

        for (int slot = 0; slot < slots; slot++)
        {
            if (_lastActive[slot] == 0 && !_unlistedSlots.Contains(slot) && _registry.IsListed((slot * _shardCount) + _index, _slotGeneration[slot]))
            {
                _lastActive[slot] = _watermark;
            }
        }
    }

    private SeriesId IdOf(int slot, int generation) => new((slot * _shardCount) + _index, _registry.Tag, generation);

    /// <summary>
    /// Phase two, at each tick: a batch of unlisted series whose every source has flushed since the unlisting,
    /// and whose batches handed over until then this shard has processed, is sealed (the slots' generation
    /// moves on, so a later point through the old ids is refused and counted as stale); a sealed series is
    /// retired (registry generation, sketches, index reusable after the quarantine) once no open window holds
    /// its points, which leave under its labels first.
    /// </summary>
    private void AdvanceRetirements()
    {
        if (_retirements.Count == 0)
        {
            return;
        }

        long reusableAt = _time.GetTimestamp() + (long)(_seriesIdleMs / 1000.0 * _time.TimestampFrequency);
        for (int i = _retirements.Count - 1; i >= 0; i--)
        {
            Retirement retirement = _retirements[i];
            if (!retirement.Sealed)
            {
                if (!NothingOnItsWay(retirement))
                {
                    continue;
                }

                foreach (int slot in retirement.Slots)
                {
                    _slotGeneration[slot]++;
                }

                retirement.Sealed = true;
            }

            List<int> slots = retirement.Slots;
            for (int k = slots.Count - 1; k >= 0; k--)
            {
                if (!InOpenWindow(slots[k]))
                {
                    Retire(slots[k], reusableAt);
                    slots.RemoveAt(k);
                }
            }

            if (slots.Count == 0)
            {
                _retirements.RemoveAt(i);
            }
        }
    }

    /// <summary>
    /// Whether every point the retirement's sources wrote before its unlisting has been processed here (or
    /// counted as dropped). Per source, either this shard has processed a batch numbered past the one the
    /// source was handing over at the unlisting (its buffer for this shard then went out at the latest in
    /// that batch), or the source has since flushed leaving nothing buffered (or retired) and this shard has
    /// processed what it had handed over by then.
    /// </summary>
    private bool NothingOnItsWay(Retirement retirement)
    {
        bool clear = true;
        for (int i = 0; i < retirement.Sources.Length; i++)
        {
            SourceCounters c = retirement.Sources[i];
            long processed = _sources.TryGetValue(c, out ShardSource? source) ? source.ProcessedSeq : 0;
            // A drained source this shard has forgotten had every batch acknowledged, so processed.
            processed = Math.Max(processed, Volatile.Read(ref c.AckedSeq[_index]));
            if (processed > retirement.SentAtUnlisting[i])
            {
                continue;
            }

            if (retirement.Targets[i] < 0)
            {
                bool flushed = c.Retired || !c.Buffered || Volatile.Read(ref c.ClearFlushes) != retirement.ClearFlushes[i];
                if (!flushed)
                {
                    clear = false;
                    continue;
                }

                retirement.Targets[i] = Volatile.Read(ref c.SentSeq[_index]);
            }

            // A sequence published for a batch that was then dropped (or left buffered by a timer's flush) is
            // taken back: the lower value is what will come.
            long target = Math.Min(retirement.Targets[i], Volatile.Read(ref c.SentSeq[_index]));
            retirement.Targets[i] = target;
            if (processed < target)
            {
                clear = false;
            }
        }

        return clear;
    }

    private void Retire(int slot, long reusableAt)
    {
        int generation = _registry.Retire(IdOf(slot, _slotGeneration[slot] - 1), reusableAt);
        System.Diagnostics.Debug.Assert(generation == _slotGeneration[slot], "The registry and the shard agree on the slot's generation.");
        _unlistedSlots.Remove(slot);
        _lastActive[slot] = 0;
        foreach (WindowBuffer w in _free)
        {
            w.Forget(slot);
        }

        foreach (WindowBuffer w in _open)
        {
            w.Forget(slot);
        }
    }

    private bool InOpenWindow(int slot)
    {
        foreach (WindowBuffer w in _open)
        {
            if (slot < w.Capacity && w.Moments[slot].Count > 0)
            {
                return true;
            }
        }

        return false;
    }

    private async ValueTask CloseDueAsync()
    {
        while (_open.Count > 0 && _open[0].End <= _watermark)
        {
            await EmitAsync(_open[0]).ConfigureAwait(false);
        }
    }

    /// <summary>Emits now every open window up to the last one that holds points of <paramref name="counters"/>, without moving the watermark.</summary>
    private async ValueTask CloseSourceAsync(SourceCounters counters)
    {
        if (!_sources.TryGetValue(counters, out ShardSource? source))
        {
            return;
        }

        while (_open.Count > 0 && _open[0].End <= source.MaxWindowEnd)
        {
            await EmitAsync(_open[0]).ConfigureAwait(false);
        }
    }

    private async ValueTask EmitAsync(WindowBuffer window)
    {
        InflightWindow? inflight = null;
        lock (_ackGate)
        {
            _open.Remove(window);
            Volatile.Write(ref _minOpenEnd, _open.Count > 0 ? _open[0].End : long.MaxValue);
            if (window.TouchedCount > 0)
            {
                inflight = new InflightWindow(window.End);
                _inflight.Add(inflight);
            }
        }

        if (ReferenceEquals(window, _current))
        {
            _current = null;
        }

        if (inflight is not null)
        {
            for (int i = 0; i < window.TouchedCount; i++)
            {
                // Slots in a window are below the generation array's length: every point passed its check.
                _lastActive[window.Touched[i]] = window.End;
            }

            long sequence = ++_emitSequence;
            try
            {
                await _emit(window, _index, sequence, (_, abandoned) => OnWindowDone(inflight, abandoned)).ConfigureAwait(false);
                Volatile.Write(ref _counters.EmittedPoints, _counters.EmittedPoints + window.Points);
                Volatile.Write(ref _counters.WindowsEmitted, _counters.WindowsEmitted + 1);
            }
            catch (Exception e)
            {
                // The window could not be built or handed over: its points are lost, and counted.
                // Off aggregated before onto faulted: a snapshot reads faulted first (MetricsPipeline.GetMetrics), so it
                // never finds these points in both.
                Volatile.Write(ref _counters.Aggregated, _counters.Aggregated - window.Points);
                RecordFault(e, window.Points);
                OnWindowDone(inflight, abandoned: false);
            }
        }

        int touched = window.TouchedCount;
        window.Reset();
        TrimSketchPool(touched);
        if (_free.Count < MaxFreeWindows)
        {
            _free.Push(window);
        }
    }

    /// <summary>
    /// Keeps in the sketch pool no more sketches than the largest of the last <see cref="RecentWindows"/>
    /// windows used: what a new window can draw without allocating. Without it the pool keeps every sketch
    /// of the busiest moment ever (a burst of series, a churn of label values), for the pipeline's life.
    /// </summary>
    private void TrimSketchPool(int touched)
    {
        _recentTouched[(int)(_emitSequence % RecentWindows)] = touched;
        int keep = 0;
        foreach (int t in _recentTouched)
        {
            keep = Math.Max(keep, t);
        }

        while (_sketchPool.Count > keep)
        {
            _sketchPool.Pop();
        }
    }

    /// <summary>Every sink is done with an emitted window (on a sink's thread): acknowledge what that unblocks.</summary>
    private void OnWindowDone(InflightWindow window, bool abandoned)
    {
        if (abandoned)
        {
            // A forced stop: the window never reached that sink, so nothing behind it is acknowledged.
            return;
        }

        lock (_ackGate)
        {
            window.Done = true;
            _inflight.RemoveAll(static w => w.Done);
            long minPending = MinPendingEndLocked();
            foreach (ShardSource source in _sources.Values)
            {
                SweepLocked(source, minPending);
            }
        }
    }

    /// <summary>The smallest end of a window that is open or emitted but not done: a source batch that touched only earlier windows is acknowledged.</summary>
    private long MinPendingEndLocked()
    {
        long min = Volatile.Read(ref _minOpenEnd);
        foreach (InflightWindow w in _inflight)
        {
            if (w.End < min)
            {
                min = w.End;
            }
        }

        return min;
    }

    private void SweepLocked(ShardSource source, long minPendingEnd)
    {
        long acked = -1;
        while (source.Pending.TryPeek(out (long Seq, long MaxEnd) next) && next.MaxEnd < minPendingEnd)
        {
            source.Pending.Dequeue();
            acked = next.Seq;
        }

        if (acked > 0)
        {
            Volatile.Write(ref source.Counters.AckedSeq[_index], acked);
            source.Counters.SignalAcked();
        }
    }

    /// <summary>This shard's view of one source.</summary>
    private sealed class ShardSource(SourceCounters counters)
    {
        public readonly SourceCounters Counters = counters;

        /// <summary>Batches processed but not yet acknowledged, with the largest window end the source had touched by then.</summary>
        public readonly Queue<(long Seq, long MaxEnd)> Pending = new();

        public long Progress = long.MinValue;
        public long LastSeen;
        public long ProcessedSeq;
        public long MaxWindowEnd = long.MinValue;
        public bool Idle;
    }

    /// <summary>Series this shard unlisted at one scan, on their way to retirement, and what the sources had sent by then.</summary>
    private sealed class Retirement
    {
        public Retirement(List<int> slots, SourceCounters[] sources, int shard)
        {
            Slots = slots;
            Sources = sources;
            ClearFlushes = new long[sources.Length];
            SentAtUnlisting = new long[sources.Length];
            Targets = new long[sources.Length];
            for (int i = 0; i < sources.Length; i++)
            {
                ClearFlushes[i] = Volatile.Read(ref sources[i].ClearFlushes);
                SentAtUnlisting[i] = Volatile.Read(ref sources[i].SentSeq[shard]);
                Targets[i] = -1;
            }
        }

        public readonly List<int> Slots;

        /// <summary>Every source not yet folded into its name's totals at the unlisting.</summary>
        public readonly SourceCounters[] Sources;

        /// <summary>Per source, its <see cref="SourceCounters.ClearFlushes"/> at the unlisting.</summary>
        public readonly long[] ClearFlushes;

        /// <summary>Per source, the batch sequence to this shard published (being handed over, or handed over) at the unlisting.</summary>
        public readonly long[] SentAtUnlisting;

        /// <summary>Per source, the last batch sequence to this shard that may hold points from before the unlisting; -1 until the source has flushed.</summary>
        public readonly long[] Targets;

        /// <summary>Whether the slots' generation has moved on (points through the old ids are refused).</summary>
        public bool Sealed;
    }

    /// <summary>An emitted window some sink is not done with yet.</summary>
    private sealed class InflightWindow(long end)
    {
        public readonly long End = end;
        public bool Done;
    }
}
