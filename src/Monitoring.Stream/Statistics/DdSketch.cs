using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

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
    private readonly double _binsPerOctave;
    private readonly double[] _tables;
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
        _binsPerOctave = Math.Log(2) * _multiplier;
        _tables = BinTables.For(relativeAccuracy, this, addRepresentativeTable);
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

    /// <summary>The bin index of a positive magnitude by the reference formula <c>ceil(log(x) / log(gamma))</c>; for tests.</summary>
    internal int GetBinIndexByLog(double magnitude) => IndexByLog(magnitude);

    /// <summary>Hints the processor to fetch the bins a summary will read (up to 16 cache lines).</summary>
    internal void PrefetchBins() => _positive.Prefetch(16);

    /// <summary>Adds one finite value.</summary>
    /// <exception cref="OverflowException">The count is already 2^64 - 1 (only a sketch read or merged near that count can be); nothing changes.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(double value)
    {
        // Checked first, so a refused value changes nothing; the branch is never taken in practice.
        _count = checked(_count + 1);
        if (value > _minIndexable)
        {
            _positive.Increment(IndexOf(value), _maxBins, collapseHighest: false);
        }
        else if (value < -_minIndexable)
        {
            _negative.Increment(IndexOf(-value), _maxBins, collapseHighest: true);
        }
        else
        {
            _zeroCount++;
        }

        if (value < _min)
        {
            _min = value;
        }

        if (value > _max)
        {
            _max = value;
        }
    }

    /// <summary>The bin of a positive magnitude: <c>ceil(log(magnitude) / log(gamma))</c>, exactly as <see cref="Math.Log(double)"/> computes it.</summary>
    /// <remarks>
    /// PERF: <c>Math.Log</c> was about 7 % of a shard's time. Within the shared table's range (about
    /// 1e-36 to 1e36 at alpha 0.01) the bin is found without it: the double's binary exponent plus a cubic
    /// in its mantissa give log2 to within 0.001, so the guess is at most one bin off (at alpha 0.01), and
    /// the table of each bin's upper bound, found at start-up as the largest double that the <c>Math.Log</c>
    /// formula puts in that bin, corrects it. So the index is bit-identical to the formula's for every
    /// double, and bins, encodings and merges are unchanged (tested over random and boundary values).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int IndexOf(double magnitude)
    {
        double[] table = _tables;
        if (table.Length != 0)
        {
            ref double bounds = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(table), 2 * BinTables.Half);
            if (magnitude > bounds && magnitude <= Unsafe.Add(ref bounds, (2 * BinTables.Half) - 1))
            {
                long bits = BitConverter.DoubleToInt64Bits(magnitude);
                double t = BitConverter.Int64BitsToDouble((bits & 0x000F_FFFF_FFFF_FFFFL) | 0x3FF0_0000_0000_0000L) - 1;
                double log2 = (int)((bits >> 52) - 1023) + (Log2C0 + (t * (Log2C1 + (t * (Log2C2 + (t * Log2C3))))));
                int slot = Math.Clamp((int)Math.Ceiling(log2 * _binsPerOctave) + BinTables.Half, 1, (2 * BinTables.Half) - 1);
                while (magnitude > Unsafe.Add(ref bounds, slot))
                {
                    slot++;
                }

                while (magnitude <= Unsafe.Add(ref bounds, slot - 1))
                {
                    slot--;
                }

                return slot - BinTables.Half;
            }
        }

        return IndexByLog(magnitude);
    }

    /// <summary>The reference formula of the bin index, which the table reproduces.</summary>
    private int IndexByLog(double magnitude) => (int)Math.Ceiling(Math.Log(magnitude) * _multiplier);

    // Cubic interpolation of log2(1 + t) on [0, 1) at the Chebyshev nodes; error below 0.00083.
    private const double Log2C0 = 0.0008254628229340403;
    private const double Log2C1 = 1.415653190432739;
    private const double Log2C2 = -0.5687040530057597;
    private const double Log2C3 = 0.15270028479752673;

    /// <summary>The value a bin answers with: within alpha of every magnitude mapped to it.</summary>
    /// <remarks>PERF: bins near 1 (about 1e-36 to 1e36 at alpha 0.01) read a table shared by every
    /// sketch of the same accuracy, filled by <see cref="ComputeRepresentative"/> itself, so answers
    /// are bit-identical either way; a window's quantile columns cost no <c>exp</c> per series.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private double RepresentativeOf(int index)
    {
        uint slot = (uint)(index + BinTables.Half);
        double[] table = _tables;
        return slot < (uint)(table.Length >> 1) ? table[slot] : ComputeRepresentative(index);
    }

    private double ComputeRepresentative(int index) => Math.Exp(index * _logGamma) * (2 / (1 + _gamma));

    /// <summary>
    /// One array per relative accuracy, shared by every sketch of it: the representatives of bins
    /// <c>[-Half, Half)</c>, then the upper bound of each of those bins (the largest double the index
    /// formula puts in it). One array, so a sketch holds one reference for both.
    /// </summary>
    private static class BinTables
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

            table = new double[4 * Half];
            for (int i = 0; i < 2 * Half; i++)
            {
                table[i] = sketch.ComputeRepresentative(i - Half);
            }

            for (int i = 0; i < 2 * Half; i++)
            {
                if (!TryFindUpperBound(sketch, i - Half, out table[(2 * Half) + i]))
                {
                    // The formula is not monotonic near this bound (not seen on any platform): no table,
                    // every index by the formula itself.
                    return [];
                }
            }

            return s_tables.GetOrAdd(alpha, table);
        }

        /// <summary>The largest double whose index by the formula is at most <paramref name="index"/>, stepping by ulps from gamma^index.</summary>
        private static bool TryFindUpperBound(DdSketch sketch, int index, out double bound)
        {
            bound = Math.Exp(index * sketch._logGamma);
            for (int steps = 0; steps < 4096; steps++)
            {
                if (sketch.IndexByLog(bound) > index)
                {
                    bound = double.BitDecrement(bound);
                }
                else if (sketch.IndexByLog(double.BitIncrement(bound)) <= index)
                {
                    bound = double.BitIncrement(bound);
                }
                else
                {
                    return true;
                }
            }

            return false;
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
