using System.Runtime.CompilerServices;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Series;

/// <summary>
/// Interns each (metric, label set) once into a dense <see cref="SeriesId"/>. Safe for any number of
/// concurrent producers; finding an existing series takes no lock and allocates nothing.
/// </summary>
/// <remarks>
/// Each metric holds at most <see cref="SeriesRegistryOptions.MaxSeriesPerMetric"/> series. Label sets
/// beyond that resolve to one overflow series of the metric, labelled
/// <c>otel_metric_overflow="true"</c>, and <see cref="GetOverflowResolutions"/> counts them. The pipeline
/// reclaims idle series in two phases (<see cref="Unlist"/>, then <see cref="Retire"/>), so memory is bounded
/// by the limits and by the live series; an id stays valid until its series is retired.
/// </remarks>
public sealed class SeriesRegistry
{
    /// <summary>The label that marks a metric's overflow series.</summary>
    public const string OverflowLabelName = "otel_metric_overflow";

    private static readonly Label[] s_overflowLabels = [new Label(OverflowLabelName, "true")];

    private readonly SeriesRegistryOptions _options;
    private readonly SeriesTable _table = new();
    private readonly SeriesIdentityIndex _identity;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, MetricEntry> _metrics = new(StringComparer.Ordinal);
    private readonly long[] _rejections = new long[(int)Enum.GetValues<RejectReason>().Max() + 1];
    private SeriesDescriptor[] _byId = new SeriesDescriptor[256];
    private int[] _generations = new int[256];
    private byte[]?[] _names = new byte[]?[256];
    private byte[]?[] _metricNames = new byte[]?[16];
    private int _metricNamesCount;
    private readonly Queue<(int Id, long ReusableAt)> _reclaimed = new();
    private int _live;
    private long _reclaimedTotal;
    private long _retiredTotal;
    private static int s_nextTag;
    private readonly int _tag = Interlocked.Increment(ref s_nextTag);
    private int _count;
    private long _overflowResolutions;

    /// <summary>Creates a registry with the given limits, or the defaults.</summary>
    public SeriesRegistry(SeriesRegistryOptions? options = null)
    {
        _options = options ?? new SeriesRegistryOptions();
        _options.Validate();
        _identity = new SeriesIdentityIndex(_tag);
    }

    /// <summary>The limits this registry enforces.</summary>
    public SeriesRegistryOptions Options => _options;

    /// <summary>The tag written into every id this registry issues (never 0).</summary>
    internal int Tag => _tag;

    /// <summary>Whether <paramref name="id"/> was issued by this registry.</summary>
    public bool Owns(SeriesId id) => id.Owner == _tag && (uint)id.Value < (uint)Count;

    /// <summary>Ids issued so far, overflow series included: the high-water mark of series indexes (reclaimed indexes are reused).</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Number of distinct metric names.</summary>
    public int MetricCount
    {
        get
        {
            lock (_gate)
            {
                return _metrics.Count;
            }
        }
    }

    /// <summary>Resolutions, over all metrics, that landed in an overflow series.</summary>
    public long OverflowResolutions => Interlocked.Read(ref _overflowResolutions);

    /// <summary>Returns the id of the series, interning it on first sight.</summary>
    /// <exception cref="MetricValidationException">The metric name or labels break the data model or a limit.</exception>
    public SeriesId GetOrAdd(string metric, params ReadOnlySpan<Label> labels)
    {
        RejectReason reason = TryGetOrAdd(metric, labels, out SeriesId id);
        if (reason != RejectReason.None)
        {
            ThrowRejected(reason, metric, labels);
        }

        return id;
    }

    /// <summary>Returns the id of the series with a canonical label set, interning it on first sight.</summary>
    /// <exception cref="MetricValidationException">The metric name or labels break the data model or a limit.</exception>
    public SeriesId GetOrAdd(string metric, LabelSet labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        return GetOrAdd(metric, labels.AsSpan());
    }

    /// <summary>Returns the id of the series, interning it on first sight, or why it cannot.</summary>
    /// <returns><see cref="RejectReason.None"/> with <paramref name="id"/> set, or the reason (which is also counted).</returns>
    public RejectReason TryGetOrAdd(string metric, ReadOnlySpan<Label> labels, out SeriesId id)
    {
        id = default;
        if (metric is null)
        {
            return Reject(RejectReason.InvalidMetricName);
        }

        // PERF: callers that pass the same string objects every time (the common case) are answered
        // from their identity, without reading the strings (see SeriesIdentityIndex).
        if (_identity.TryFind(metric, labels, out id))
        {
            return RejectReason.None;
        }

        if (labels.Length > _options.MaxLabelsPerSeries)
        {
            return Reject(RejectReason.TooManyLabels);
        }

        int hash = SeriesHash.Compute(metric, labels);
        if (hash == 0)
        {
            return Reject(RejectReason.InvalidLabelName);
        }

        // PERF: the hash ignores label order and the match pairs labels in any order, so a hit
        // needs no sorting at all; sorting (and duplicate detection) is left to misses.
        int found = _table.Find(metric, labels, [], hash, out bool sameObjects);
        if (found >= 0)
        {
            id = Issue(found);
            if (sameObjects)
            {
                RememberIdentity(found, id, metric, labels);
            }

            return RejectReason.None;
        }

        return GetOrAddCanonicalSlow(metric, labels, hash, out id);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit]
    private RejectReason GetOrAddCanonicalSlow(string metric, ReadOnlySpan<Label> labels, int hash, out SeriesId id)
    {
        id = default;
        Span<byte> order = stackalloc byte[labels.Length];
        RejectReason reason = Canonicalize(labels, order, out int kept);
        if (reason != RejectReason.None)
        {
            return Reject(reason);
        }

        // An empty order means "as given" to the table, so a set whose labels all have empty
        // values is looked up as the empty set it is.
        ReadOnlySpan<byte> canonical = kept == 0 ? [] : order[..kept];
        if (kept == 0)
        {
            labels = [];
        }

        int found = _table.Find(metric, labels, canonical, hash);
        if (found >= 0)
        {
            id = Issue(found);
            return RejectReason.None;
        }

        return AddSlow(metric, labels, canonical, hash, out id);
    }

    /// <summary>The caller passed the series' own string objects but missed the identity index (first call, a collision, or objects the GC has moved): remembered.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RememberIdentity(int index, SeriesId id, string metric, ReadOnlySpan<Label> labels)
    {
        SeriesDescriptor[] byId = Volatile.Read(ref _byId);
        if ((uint)index >= (uint)byId.Length || byId[index] is not { } seen || _identity.HasNoRoom(seen))
        {
            return;
        }

        lock (_gate)
        {
            if (_byId[index] is { IsUnlisted: false, IsOverflow: false } descriptor && descriptor.Id == id)
            {
                _identity.RememberLocked(descriptor, metric, labels);
            }
        }
    }

    /// <summary>
    /// Whether the index is issued to a listed series of that generation (not unlisted, not an overflow series);
    /// read without the lock, for a shard's reclaim scan, which <see cref="Unlist"/> checks again under it.
    /// </summary>
    internal bool IsListed(int index, int generation)
    {
        SeriesDescriptor[] byId = Volatile.Read(ref _byId);
        return (uint)index < (uint)byId.Length && byId[index] is { IsUnlisted: false, IsOverflow: false } descriptor
            && descriptor.Id.Generation == generation;
    }

    /// <summary>An id of this registry for the index, with the index's current generation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private SeriesId Issue(int index)
    {
        int[] generations = Volatile.Read(ref _generations);
        return new SeriesId(index, _tag, (uint)index < (uint)generations.Length ? Volatile.Read(ref generations[index]) : 0);
    }

    /// <summary>Bytes of the index that answers callers passing the series' own string objects (a 48-byte slot, 1.25 to 2.5 slots per live series).</summary>
    internal long IdentityIndexBytes => _identity.Bytes;

    /// <summary>Live series the identity index can answer (the others, whose window of slots was full, are answered by value).</summary>
    internal int IdentityIndexed
    {
        get
        {
            lock (_gate)
            {
                return _identity.Indexed;
            }
        }
    }

    /// <summary>Shapes (metric and label-name objects shared by series) the identity index keeps.</summary>
    internal int IdentityShapes
    {
        get
        {
            lock (_gate)
            {
                return _identity.Shapes;
            }
        }
    }

    /// <summary>Series interned now: issued ids minus those reclaimed (unlisted) and not yet reused.</summary>
    public int LiveCount => Volatile.Read(ref _live);

    /// <summary>Series reclaimed (unlisted) after being idle, over the registry's life; a change tells a cache of ids to resolve again.</summary>
    /// <remarks>PERF: read on every call of an SDK bound handle. <c>Interlocked.Read</c> is a locked compare-exchange on
    /// x64, a full barrier that waits for the caller's earlier stores (the previous point's) to leave the store
    /// buffer; <c>Volatile.Read</c> of a long is atomic on every platform and a plain load here.</remarks>
    public long Reclaimed => Volatile.Read(ref _reclaimedTotal);

    /// <summary>Reclaimed series whose ids are retired too: points written through them are refused from then on.</summary>
    public long Retired => Interlocked.Read(ref _retiredTotal);

    /// <summary>
    /// Phase one of reclaiming an idle series (called by the shard that owns it): the series leaves the
    /// lookup table, so a later lookup of its labels interns a fresh id, and it stops counting as live. The
    /// id itself stays valid: points already on their way through it are still aggregated, under its labels,
    /// until the shard retires it (<see cref="Retire"/>).
    /// </summary>
    /// <returns>False when the id is not current, already unlisted, or an overflow series (kept for its metric's life).</returns>
    internal bool Unlist(SeriesId id)
    {
        lock (_gate)
        {
            if ((uint)id.Value >= (uint)_count || _generations[id.Value] != id.Generation || _byId[id.Value] is not { IsOverflow: false } descriptor
                || !_table.Contains(descriptor))
            {
                return false;
            }

            _table.RemoveLocked(descriptor);
            descriptor.IsUnlisted = true;
            _identity.ForgetLocked(descriptor);
            if (_metrics.TryGetValue(descriptor.Metric, out MetricEntry? entry))
            {
                entry.SeriesCount--;
            }

            Volatile.Write(ref _live, _live - 1);
            Interlocked.Increment(ref _reclaimedTotal);
            return true;
        }
    }

    /// <summary>
    /// Phase two (called by the owning shard once nothing sent before <see cref="Unlist"/> can still arrive,
    /// and no open window holds the series): the index's generation moves on, so any id issued before is
    /// refused, and the index is reused only after <paramref name="reusableAt"/> (a
    /// <see cref="TimeProvider.GetTimestamp"/> value).
    /// </summary>
    /// <returns>The index's new generation, or -1 when the id is not current or still listed.</returns>
    internal int Retire(SeriesId id, long reusableAt)
    {
        lock (_gate)
        {
            if ((uint)id.Value >= (uint)_count || _generations[id.Value] != id.Generation || _byId[id.Value] is not { IsOverflow: false } descriptor
                || _table.Contains(descriptor))
            {
                return -1;
            }

            int generation = _generations[id.Value] + 1;
            Volatile.Write(ref _generations[id.Value], generation);
            Volatile.Write(ref _names[id.Value], null);
            _reclaimed.Enqueue((id.Value, reusableAt));
            Interlocked.Increment(ref _retiredTotal);
            return generation;
        }
    }

    /// <summary>The clock of reclaim quarantines; the pipeline sets its own.</summary>
    internal TimeProvider Time { get; set; } = TimeProvider.System;

    /// <summary>Describes the series behind an id this registry issued.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id was not issued by this registry.</exception>
    public SeriesDescriptor GetDescriptor(SeriesId id)
    {
        SeriesDescriptor[] byId = Volatile.Read(ref _byId);
        if ((uint)id.Value >= (uint)Count || (uint)id.Value >= (uint)byId.Length || (id.Owner != 0 && id.Owner != _tag))
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, "The id was not issued by this registry.");
        }

        return byId[id.Value];
    }

    /// <summary>
    /// Each series' label names and values in UTF-8 as the Arrow window writers lay them out
    /// (<c>SeriesUtf8</c>), after the index of its metric's record in <see cref="MetricNames"/>, by id
    /// index; null before the series' first emitted window. An index's names are cleared when it is
    /// retired and when it is reused.
    /// </summary>
    /// <remarks>
    /// PERF: kept here, beside the descriptors, rather than on each descriptor: a window's rows read
    /// this array in id order and never touch the descriptor objects, one cold object fewer per row.
    /// A snapshot: series added after it are past its end, and names kept into it after the registry
    /// has grown are lost (made again at the series' next window).
    /// </remarks>
    internal byte[]?[] Names => Volatile.Read(ref _names);

    /// <summary>Keeps the UTF-8 names of the series at <paramref name="index"/> (see <see cref="Names"/>); its metric's index must come from <see cref="GetMetricNamesIndex"/>.</summary>
    internal void SetNames(int index, byte[] utf8)
    {
        byte[]?[] names = Volatile.Read(ref _names);
        if ((uint)index < (uint)names.Length)
        {
            Volatile.Write(ref names[index], utf8);
        }
    }

    /// <summary>
    /// Each metric's name in UTF-8 as the Arrow window writers lay it out (<c>SeriesUtf8.EncodeMetric</c>),
    /// by the index a series' record in <see cref="Names"/> starts with (<see cref="GetMetricNamesIndex"/>).
    /// </summary>
    /// <remarks>
    /// One record a metric rather than a copy in every series' record. A record is made at its metric's
    /// first emitted window and kept for the registry's life, as the metric's entry is: an index never
    /// names another metric, so a series' record read from a reused slot is whole with any snapshot
    /// that has its index. Bounded by <see cref="SeriesRegistryOptions.MaxMetrics"/> (should metric
    /// entries ever be removed, their records must outlive every series record that holds their index).
    /// A snapshot: a record made after it is past its end or null there (see <see cref="GetMetricNames"/>).
    /// </remarks>
    internal byte[]?[] MetricNames => Volatile.Read(ref _metricNames);

    /// <summary>
    /// The index in <see cref="MetricNames"/> of <paramref name="metric"/>'s record, made with
    /// <paramref name="encode"/> on the metric's first call.
    /// </summary>
    /// <exception cref="ArgumentException">The metric has no series in this registry.</exception>
    internal int GetMetricNamesIndex(string metric, Func<string, byte[]> encode)
    {
        lock (_gate)
        {
            if (!_metrics.TryGetValue(metric, out MetricEntry? entry))
            {
                throw new ArgumentException($"Metric {metric} has no series in this registry.", nameof(metric));
            }

            if (entry.NamesIndex < 0)
            {
                // Publication order: the record is in the array and the array published before the
                // index is handed out, so whoever reads the index from a series' record finds it.
                byte[]?[] names = _metricNames;
                if (_metricNamesCount == names.Length)
                {
                    Array.Resize(ref names, names.Length * 2);
                }

                Volatile.Write(ref names[_metricNamesCount], encode(metric));
                Volatile.Write(ref _metricNames, names);
                entry.NamesIndex = _metricNamesCount++;
            }

            return entry.NamesIndex;
        }
    }

    /// <summary>The metric's record at <paramref name="index"/>, from an index a series' record holds, for a reader whose <see cref="MetricNames"/> snapshot lacks it.</summary>
    internal byte[] GetMetricNames(int index)
    {
        byte[]?[] names = Volatile.Read(ref _metricNames);
        if ((uint)index < (uint)names.Length && Volatile.Read(ref names[index]) is { } utf8)
        {
            return utf8;
        }

        // Made by another thread whose writes this one has not seen in order yet; the lock orders them.
        lock (_gate)
        {
            return (uint)index < (uint)_metricNamesCount ? _metricNames[index]! : throw new ArgumentOutOfRangeException(nameof(index));
        }
    }

    /// <summary>Resolutions of <paramref name="metric"/> that landed in its overflow series.</summary>
    public long GetOverflowResolutions(string metric)
    {
        lock (_gate)
        {
            return _metrics.TryGetValue(metric, out MetricEntry? entry) ? entry.OverflowResolutions : 0;
        }
    }

    /// <summary>Number of distinct series of <paramref name="metric"/>, its overflow series excluded.</summary>
    public int GetSeriesCount(string metric)
    {
        lock (_gate)
        {
            return _metrics.TryGetValue(metric, out MetricEntry? entry) ? entry.SeriesCount : 0;
        }
    }

    /// <summary>How many lookups were refused for <paramref name="reason"/>.</summary>
    public long GetRejectedCount(RejectReason reason) => Interlocked.Read(ref _rejections[(int)reason]);

    /// <summary>
    /// Sorts the indices of non-empty labels by name (insertion sort: label sets are small and usually
    /// arrive sorted, which makes this n - 1 comparisons) and detects duplicate names.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static RejectReason Canonicalize(ReadOnlySpan<Label> labels, Span<byte> order, out int kept)
    {
        kept = 0;
        for (int i = 0; i < labels.Length; i++)
        {
            string name = labels[i].Name;
            if (name is null)
            {
                return RejectReason.InvalidLabelName;
            }

            if (string.IsNullOrEmpty(labels[i].Value))
            {
                continue;
            }

            int j = kept;
            while (j > 0)
            {
                int cmp = CompareNames(labels[order[j - 1]].Name, name);
                if (cmp < 0)
                {
                    break;
                }

                if (cmp == 0)
                {
                    return RejectReason.DuplicateLabelName;
                }

                order[j] = order[j - 1];
                j--;
            }

            order[j] = (byte)i;
            kept++;
        }

        return RejectReason.None;
    }

    /// <summary>Ordinal comparison of label names.</summary>
    /// <remarks>PERF: names of one series nearly always differ in the first character, which settles
    /// the order without the general comparison's call.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int CompareNames(string a, string b)
    {
        if (a.Length > 0 && b.Length > 0 && a[0] != b[0])
        {
            return a[0] - b[0];
        }

        return string.CompareOrdinal(a, b);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason AddSlow(string metric, ReadOnlySpan<Label> labels, ReadOnlySpan<byte> order, int hash, out SeriesId id)
    {
        id = default;
        RejectReason reason = Validate(metric, labels, order);
        if (reason != RejectReason.None)
        {
            return Reject(reason);
        }

        lock (_gate)
        {
            int raced = _table.Find(metric, labels, order, hash);
            if (raced >= 0)
            {
                id = Issue(raced);
                return RejectReason.None;
            }

            if (!_metrics.TryGetValue(metric, out MetricEntry? entry))
            {
                if (_metrics.Count >= _options.MaxMetrics)
                {
                    return Reject(RejectReason.MetricLimitExceeded);
                }

                entry = new MetricEntry();
                _metrics.Add(metric, entry);
            }

            if (entry.SeriesCount >= _options.MaxSeriesPerMetric)
            {
                entry.OverflowResolutions++;
                Interlocked.Increment(ref _overflowResolutions);
                entry.Overflow ??= GetOrCreateOverflowLocked(metric);
                id = entry.Overflow.Id;
                return RejectReason.None;
            }

            var canonical = new Label[order.Length];
            for (int i = 0; i < canonical.Length; i++)
            {
                canonical[i] = labels[order[i]];
            }

            bool isOverflowSeries = canonical.Length == 1 && canonical[0] == s_overflowLabels[0];
            SeriesDescriptor descriptor = InsertLocked(metric, canonical, isOverflowSeries);
            if (isOverflowSeries)
            {
                entry.Overflow = descriptor;
            }
            else
            {
                entry.SeriesCount++;
                _identity.RememberLocked(descriptor, metric, labels);
            }

            id = descriptor.Id;
            return RejectReason.None;
        }
    }

    private SeriesDescriptor GetOrCreateOverflowLocked(string metric)
    {
        int existing = _table.Find(metric, s_overflowLabels, [], SeriesHash.Compute(metric, s_overflowLabels));
        return existing >= 0 ? GetDescriptor(new SeriesId(existing, _tag)) : InsertLocked(metric, s_overflowLabels, isOverflow: true);
    }

    private SeriesDescriptor InsertLocked(string metric, Label[] canonicalLabels, bool isOverflow)
    {
        int hash = SeriesHash.Compute(metric, canonicalLabels);
        if (_reclaimed.TryPeek(out (int Id, long ReusableAt) free) && Time.GetTimestamp() >= free.ReusableAt)
        {
            // A reclaimed index past its quarantine: same slot in every shard array, new generation.
            _reclaimed.Dequeue();
            var reused = new SeriesDescriptor(new SeriesId(free.Id, _tag, _generations[free.Id]), metric, canonicalLabels, isOverflow, hash);
            Volatile.Write(ref _names[free.Id], null);
            Volatile.Write(ref _byId[free.Id], reused);
            Volatile.Write(ref _live, _live + 1);
            _table.AddLocked(reused);
            _identity.EnsureCapacityLocked(_live, _byId, _count);
            return reused;
        }

        int next = _count;
        var id = new SeriesId(next, _tag);
        var descriptor = new SeriesDescriptor(id, metric, canonicalLabels, isOverflow, hash);

        SeriesDescriptor[] byId = _byId;
        if (next == byId.Length)
        {
            Array.Resize(ref byId, byId.Length * 2);
            int[] generations = _generations;
            Array.Resize(ref generations, byId.Length);
            Volatile.Write(ref _generations, generations);

            // Names kept after this copy into the old array are lost: made again at their next window.
            byte[]?[] names = _names;
            Array.Resize(ref names, byId.Length);
            Volatile.Write(ref _names, names);
        }

        // Publication order matters: the descriptor is in the array, the array is published and
        // the count raised before the key becomes visible, so a reader that found the id in the
        // table always finds its descriptor.
        byId[next] = descriptor;
        Volatile.Write(ref _byId, byId);
        Volatile.Write(ref _count, next + 1);
        Volatile.Write(ref _live, _live + 1);
        _table.AddLocked(descriptor);
        _identity.EnsureCapacityLocked(_live, byId, next + 1);
        return descriptor;
    }

    private RejectReason Validate(string metric, ReadOnlySpan<Label> labels, ReadOnlySpan<byte> order)
    {
        if (metric.Length > _options.MaxNameLength || !PrometheusNames.IsValidMetricName(metric))
        {
            return RejectReason.InvalidMetricName;
        }

        // Only the kept labels: an empty-valued label is absent by definition, on every path.
        foreach (byte i in order)
        {
            ref readonly Label label = ref labels[i];
            if (label.Name.Length > _options.MaxNameLength || !PrometheusNames.IsValidLabelName(label.Name))
            {
                return RejectReason.InvalidLabelName;
            }

            if (label.Value.Length > _options.MaxLabelValueLength)
            {
                return RejectReason.LabelValueTooLong;
            }
        }

        return RejectReason.None;
    }

    private RejectReason Reject(RejectReason reason)
    {
        Interlocked.Increment(ref _rejections[(int)reason]);
        return reason;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowRejected(RejectReason reason, string? metric, ReadOnlySpan<Label> labels)
    {
        var text = new System.Text.StringBuilder();
        foreach (Label label in labels)
        {
            text.Append(text.Length == 0 ? "" : ",").Append(label.Name).Append("=\"").Append(label.Value).Append('"');
        }

        throw new MetricValidationException(reason, $"Series {metric ?? "<null>"}{{{text}}} refused: {reason.Describe()}.");
    }

    private sealed class MetricEntry
    {
        public int SeriesCount;
        public long OverflowResolutions;
        public SeriesDescriptor? Overflow;

        /// <summary>The index of the metric's UTF-8 record in <see cref="MetricNames"/>, or -1 before its first emitted window.</summary>
        public int NamesIndex = -1;
    }
}
