using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Monitoring.Stream.Statistics;

/// <summary>
/// A mergeable quantile sketch with relative-error guarantees (DDSketch, Masson, Rim and Lee, VLDB 2019):
/// every quantile it answers is within <see cref="RelativeAccuracy"/> of the exact value of that rank,
/// for positive, negative and zero values alike, in bounded memory.
/// </summary>
/// <remarks>
/// Values map to bins by <c>ceil(log_gamma |x|)</c> with <c>gamma = (1 + alpha) / (1 - alpha)</c>; a bin
/// answers with <c>2 gamma^i / (gamma + 1)</c>, which is within <c>alpha</c> of every value in it.
/// Values with magnitude below <see cref="MinIndexableValue"/> count as zero. Each sign holds at most
/// <see cref="MaxBinsPerSign"/> bins; beyond that the bins farthest from the top of the distribution are
/// folded together (see docs/statistics.md). Not thread-safe: one owner updates it, as a shard does.
/// </remarks>
public sealed partial class DdSketch
{
    /// <summary>The relative accuracy used when none is given.</summary>
    public const double DefaultRelativeAccuracy = 0.01;

    /// <summary>The bin limit per sign used when none is given.</summary>
    public const int DefaultMaxBinsPerSign = 2048;

    /// <summary>The smallest relative accuracy accepted (bin indices must fit in 32 bits).</summary>
    public const double MinRelativeAccuracy = 1e-5;

    /// <summary>The largest relative accuracy accepted.</summary>
    public const double MaxRelativeAccuracy = 0.5;

    /// <summary>The smallest bin limit per sign accepted.</summary>
    public const int MinMaxBins = 16;

    /// <summary>The largest bin limit per sign accepted.</summary>
    public const int MaxMaxBins = 1 << 20;

    /// <summary>Version byte of the serialization layout written by <see cref="Serialize(Span{byte})"/>.</summary>
    public const byte SerializationVersion = 1;

    /// <summary>Flag bit: both bin stores list only their occupied bins, as (gap, count) pairs.</summary>
    public const byte SparseStoresFlag = 0x01;

    private readonly double _alpha;
    private readonly double _gamma;
    private readonly double _logGamma;
    private readonly double _multiplier;
    private readonly double _minIndexable;
    private readonly double[] _representatives;
    private readonly int _maxBins;
    private DdSketchBinStore _positive;
    private DdSketchBinStore _negative;
    private ulong _zeroCount;
    private ulong _count;
    private double _min = double.PositiveInfinity;
    private double _max = double.NegativeInfinity;

    /// <summary>Creates an empty sketch.</summary>
    /// <param name="relativeAccuracy">The guaranteed relative error of every quantile, in [1e-5, 0.5].</param>
    /// <param name="maxBinsPerSign">The most bins kept for positive values and, separately, for negative values.</param>
    public DdSketch(double relativeAccuracy = DefaultRelativeAccuracy, int maxBinsPerSign = DefaultMaxBinsPerSign)
        : this(relativeAccuracy, maxBinsPerSign, addRepresentativeTable: true)
    {
    }

    private DdSketch(double relativeAccuracy, int maxBinsPerSign, bool addRepresentativeTable)
    {
        if (!(relativeAccuracy >= MinRelativeAccuracy && relativeAccuracy <= MaxRelativeAccuracy))
        {
            throw new ArgumentOutOfRangeException(nameof(relativeAccuracy), relativeAccuracy,
                $"Relative accuracy must be within [{MinRelativeAccuracy}, {MaxRelativeAccuracy}].");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(maxBinsPerSign, MinMaxBins);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxBinsPerSign, MaxMaxBins);

        _alpha = relativeAccuracy;
        _gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy);
        _logGamma = Math.Log(_gamma);
        _multiplier = 1 / _logGamma;
        _maxBins = maxBinsPerSign;
        // Below the smallest normal double, log loses precision; such magnitudes count as zero.
        _minIndexable = double.Exp(Math.Log(2.2250738585072014E-308) + _logGamma);
        _representatives = RepresentativeTable.For(relativeAccuracy, this, addRepresentativeTable);
    }

    /// <summary>The guaranteed relative error of quantile answers (alpha).</summary>
    public double RelativeAccuracy => _alpha;

    /// <summary>The bin limit for each sign.</summary>
    public int MaxBinsPerSign => _maxBins;

    /// <summary>Magnitudes below this are counted in the zero bin.</summary>
    public double MinIndexableValue => _minIndexable;

    /// <summary>Number of values in the sketch.</summary>
    public ulong Count => _count;

    /// <summary>Number of values counted as zero.</summary>
    public ulong ZeroCount => _zeroCount;

    /// <summary>Whether the sketch holds no value.</summary>
    public bool IsEmpty => _count == 0;

    /// <summary>Exact smallest value, or NaN when empty.</summary>
    public double Min => _count == 0 ? double.NaN : _min;

    /// <summary>Exact largest value, or NaN when empty.</summary>
    public double Max => _count == 0 ? double.NaN : _max;

    /// <summary>
    /// Values that landed in a bin already holding 2^32 - 1 counts; they stay in <see cref="Count"/>
    /// but not in any bin. Zero in any realistic window; nonzero means upper ranks answer the maximum.
    /// </summary>
    public ulong SaturatedCount => _positive.SaturatedCount + _negative.SaturatedCount;

    /// <summary>Approximate bytes this sketch holds on the heap, for memory accounting.</summary>
    public int EstimatedBytes => 96 + _positive.AllocatedBytes + _negative.AllocatedBytes;

    /// <summary>The count of one bin (<paramref name="negative"/> for the negative store) and the byte width of that store's counters; for tests.</summary>
    internal (uint Count, int CounterBytes) GetBin(int index, bool negative)
    {
        ref readonly DdSketchBinStore store = ref negative ? ref _negative : ref _positive;
        return (store.CountAt(index), 1 << store.CounterShift);
    }

    /// <summary>The bin index of a positive magnitude, as <see cref="Add"/> computes it; for tests.</summary>
    internal int GetBinIndex(double magnitude) => IndexOf(magnitude);

    /// <summary>Hints the processor to fetch the bins a summary will read: the first four cache lines of the positive counters' array (a latency window's ~150 bins), whatever its length.</summary>
    internal void PrefetchBins() => _positive.Prefetch(4);

    /// <summary>
    /// The bin index of |<paramref name="value"/>| for <see cref="AddWithIndex"/>, computed ahead by a caller
    /// that holds one sketch of the accuracy as its mapping; 0 for a magnitude counted as zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int MagnitudeIndexOf(double value)
    {
        double magnitude = Math.Abs(value);
        return magnitude > _minIndexable ? IndexOf(magnitude) : 0;
    }

    /// <summary>Hints the processor to fetch the counter that <see cref="AddWithIndex"/> will touch; never reads the bins.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void PrefetchBin(double value, int magnitudeIndex)
    {
        if (value > _minIndexable)
        {
            _positive.PrefetchBin(magnitudeIndex);
        }
        else if (value < -_minIndexable)
        {
            _negative.PrefetchBin(magnitudeIndex);
        }
    }

    /// <summary>
    /// Adds a positive value whose bin the positive store counts in place (<see cref="DdSketchBinStore.TryIncrementInPlace"/>):
    /// the common case, with no call. Otherwise changes nothing and returns false (<see cref="AddWithIndex"/> then).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryAddInPlace(double value, int magnitudeIndex)
    {
        ulong count = checked(_count + 1);
        if (!(value > _minIndexable) || !_positive.TryIncrementInPlace(magnitudeIndex))
        {
            return false;
        }

        _count = count;
        NoteExtremes(value);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void NoteExtremes(double value)
    {
        if (value < _min)
        {
            _min = value;
        }

        if (value > _max)
        {
            _max = value;
        }
    }

    /// <summary>
    /// <see cref="Add(double)"/> with the bin index of the value's magnitude already computed by
    /// <see cref="MagnitudeIndexOf"/> of a sketch of the same relative accuracy.
    /// </summary>
    /// <remarks>PERF: lets a shard compute a point's index (the logarithm) a few points ahead and fetch
    /// the counter it will touch, instead of waiting on the logarithm and then on the counter.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void AddWithIndex(double value, int magnitudeIndex)
    {
        // Checked first, so a refused value changes nothing; the branch is never taken in practice.
        _count = checked(_count + 1);
        if (value > _minIndexable)
        {
            _positive.Increment(magnitudeIndex, _maxBins, collapseHighest: false);
        }
        else if (value < -_minIndexable)
        {
            _negative.Increment(magnitudeIndex, _maxBins, collapseHighest: true);
        }
        else
        {
            _zeroCount++;
        }

        NoteExtremes(value);
    }

    /// <summary>Adds one finite value.</summary>
    /// <exception cref="OverflowException">The count is already 2^64 - 1 (only a sketch read or merged near that count can be); nothing changes.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(double value) => AddWithIndex(value, MagnitudeIndexOf(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int IndexOf(double magnitude) => (int)Math.Ceiling(Math.Log(magnitude) * _multiplier);

    /// <summary>The value a bin answers with: within alpha of every magnitude mapped to it.</summary>
    /// <remarks>PERF: bins near 1 (about 1e-36 to 1e36 at alpha 0.01) read a table shared by every
    /// sketch of the same accuracy, filled by <see cref="ComputeRepresentative"/> itself, so answers
    /// are bit-identical either way; a window's quantile columns cost no <c>exp</c> per series.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private double RepresentativeOf(int index)
    {
        uint slot = (uint)(index + RepresentativeTable.Half);
        double[] table = _representatives;
        return slot < (uint)table.Length ? table[slot] : ComputeRepresentative(index);
    }

    private double ComputeRepresentative(int index) => Math.Exp(index * _logGamma) * (2 / (1 + _gamma));

    /// <summary>Representatives of bins <c>[-Half, Half)</c>, one table per relative accuracy.</summary>
    private static class RepresentativeTable
    {
        public const int Half = 4096;

        private static readonly ConcurrentDictionary<double, double[]> s_tables = new();

        public static double[] For(double alpha, DdSketch sketch, bool add)
        {
            if (s_tables.TryGetValue(alpha, out double[]? table))
            {
                return table;
            }

            // Bounded: accuracies are configuration, not data; past a few, sketches compute instead.
            if (!add || s_tables.Count >= 16)
            {
                return [];
            }

            table = new double[2 * Half];
            for (int i = 0; i < table.Length; i++)
            {
                table[i] = sketch.ComputeRepresentative(i - Half);
            }

            return s_tables.GetOrAdd(alpha, table);
        }
    }

    /// <summary>Adds every value of <paramref name="other"/> to this sketch.</summary>
    /// <exception cref="ArgumentException">The sketches differ in relative accuracy or bin limit.</exception>
    /// <exception cref="OverflowException">The counts together exceed 2^64 - 1; this sketch is left unchanged.</exception>
    public void Merge(DdSketch other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other._alpha != _alpha || other._maxBins != _maxBins)
        {
            throw new ArgumentException(
                $"Cannot merge a sketch with alpha={other._alpha}, maxBins={other._maxBins} into one with alpha={_alpha}, maxBins={_maxBins}.",
                nameof(other));
        }

        if (other._count == 0)
        {
            return;
        }

        // Checked before anything changes, so a refused merge leaves this sketch as it was; the zero
        // count cannot overflow when the count does not, as it never exceeds it.
        if (_count > ulong.MaxValue - other._count)
        {
            throw new OverflowException(
                $"Merging would take the sketch's count past 2^64 - 1 ({_count} + {other._count}); the sketch is unchanged.");
        }

        MergeStore(ref _positive, in other._positive, collapseHighest: false);
        MergeStore(ref _negative, in other._negative, collapseHighest: true);
        _zeroCount += other._zeroCount;
        _count += other._count;
        if (other._min < _min)
        {
            _min = other._min;
        }

        if (other._max > _max)
        {
            _max = other._max;
        }
    }

    private void MergeStore(ref DdSketchBinStore target, in DdSketchBinStore source, bool collapseHighest)
    {
        DdSketchBinStore.Occupied counts = source.GetOccupied();
        ulong saturated = source.SaturatedCount;
        switch (counts.Shift)
        {
            case 0:
                MergeStore(ref target, counts.As<byte>(), counts.First, collapseHighest);
                break;
            case 1:
                MergeStore(ref target, counts.As<ushort>(), counts.First, collapseHighest);
                break;
            default:
                MergeStore(ref target, counts.As<uint>(), counts.First, collapseHighest);
                break;
        }

        target.SaturatedCount += saturated;
    }

    private void MergeStore<T>(ref DdSketchBinStore target, ReadOnlySpan<T> counts, int first, bool collapseHighest)
        where T : unmanaged, IBinaryInteger<T>, IMinMaxValue<T>
    {
        if (counts.IsEmpty || target.TryAddCovered(first, counts))
        {
            return;
        }

        // Add from the end nearest the kept side first, so a store that must collapse grows its
        // window once rather than shifting it bin by bin.
        if (collapseHighest)
        {
            for (int i = 0; i < counts.Length; i++)
            {
                target.Add(first + i, uint.CreateTruncating(counts[i]), _maxBins, collapseHighest);
            }
        }
        else
        {
            for (int i = counts.Length - 1; i >= 0; i--)
            {
                target.Add(first + i, uint.CreateTruncating(counts[i]), _maxBins, collapseHighest);
            }
        }
    }

    /// <summary>Forgets every value, keeping the bin arrays for reuse.</summary>
    public void Clear()
    {
        _positive.Clear();
        _negative.Clear();
        _zeroCount = 0;
        _count = 0;
        _min = double.PositiveInfinity;
        _max = double.NegativeInfinity;
    }

    /// <summary>Whether both sketches hold the same parameters, counts, extremes and bins.</summary>
    public bool ContentEquals(DdSketch? other)
    {
        if (other is null)
        {
            return false;
        }

        if (other._alpha != _alpha || other._maxBins != _maxBins || other._count != _count || other._zeroCount != _zeroCount)
        {
            return false;
        }

        if (_count != 0 && (!_min.Equals(other._min) || !_max.Equals(other._max)))
        {
            return false;
        }

        return StoresEqual(in _positive, in other._positive) && StoresEqual(in _negative, in other._negative);
    }

    private static bool StoresEqual(in DdSketchBinStore a, in DdSketchBinStore b)
    {
        bool any = a.TryGetOccupiedRange(out int lo, out int hi);
        if (any != b.TryGetOccupiedRange(out int otherLo, out int otherHi))
        {
            return false;
        }

        if (!any)
        {
            return true;
        }

        if (lo != otherLo || hi != otherHi)
        {
            return false;
        }

        for (int i = lo; i <= hi; i++)
        {
            if (a.CountAt(i) != b.CountAt(i))
            {
                return false;
            }
        }

        return true;
    }
}
