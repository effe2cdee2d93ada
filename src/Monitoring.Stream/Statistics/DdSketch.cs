using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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
public sealed class DdSketch
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

        private static readonly System.Collections.Concurrent.ConcurrentDictionary<double, double[]> s_tables = new();

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
        ReadOnlySpan<uint> counts = source.OccupiedCounts(out int first);
        // Add from the end nearest the kept side first, so a store that must collapse grows its
        // window once rather than shifting it bin by bin.
        if (collapseHighest)
        {
            for (int i = 0; i < counts.Length; i++)
            {
                target.Add(first + i, counts[i], _maxBins, collapseHighest);
            }
        }
        else
        {
            for (int i = counts.Length - 1; i >= 0; i--)
            {
                target.Add(first + i, counts[i], _maxBins, collapseHighest);
            }
        }

        target.SaturatedCount += source.SaturatedCount;
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

    /// <summary>
    /// The value at quantile <paramref name="q"/>: within alpha of the exact value at rank
    /// <c>floor(q (n - 1))</c> of the sorted values; exactly the minimum at 0 and the maximum at 1.
    /// </summary>
    /// <returns>The estimate, or NaN when the sketch is empty.</returns>
    public double GetQuantile(double q)
    {
        Span<double> result = stackalloc double[1];
        GetQuantiles([q], result);
        return result[0];
    }

    /// <summary>Answers several quantiles in one pass over the bins.</summary>
    /// <param name="quantiles">Quantiles in [0, 1], in ascending order.</param>
    /// <param name="destination">Receives one estimate per quantile (NaN when the sketch is empty).</param>
    public void GetQuantiles(ReadOnlySpan<double> quantiles, Span<double> destination)
    {
        if (destination.Length < quantiles.Length)
        {
            throw new ArgumentException("Destination is shorter than the list of quantiles.", nameof(destination));
        }

        double previous = 0;
        foreach (double q in quantiles)
        {
            if (!(q >= 0 && q <= 1))
            {
                throw new ArgumentOutOfRangeException(nameof(quantiles), q, "A quantile must be within [0, 1].");
            }

            if (q < previous)
            {
                throw new ArgumentException("Quantiles must be in ascending order.", nameof(quantiles));
            }

            previous = q;
        }

        if (_count == 0)
        {
            destination[..quantiles.Length].Fill(double.NaN);
            return;
        }

        ReadOnlySpan<uint> negative = _negative.OccupiedCounts(out int negativeFirst);
        ReadOnlySpan<uint> positive = _positive.OccupiedCounts(out int positiveFirst);
        WalkQuantiles(quantiles, destination, negative, negativeFirst, positive, positiveFirst);
    }

    private void WalkQuantiles(ReadOnlySpan<double> quantiles, Span<double> destination, ReadOnlySpan<uint> negative, int negativeFirst, ReadOnlySpan<uint> positive, int positiveFirst)
    {
        var walker = new RankWalker(this, negative, negativeFirst, positive, positiveFirst);
        for (int k = 0; k < quantiles.Length; k++)
        {
            double q = quantiles[k];
            if (q == 0)
            {
                destination[k] = _min;
            }
            else if (q == 1)
            {
                destination[k] = _max;
            }
            else
            {
                double value = walker.ValueAtRank(q * (_count - 1));
                destination[k] = Math.Clamp(value, _min, _max);
            }
        }
    }

    /// <summary>Walks the bins from the smallest value upwards, remembering where it stopped.</summary>
    private ref struct RankWalker
    {
        private readonly DdSketch _sketch;
        private readonly ReadOnlySpan<uint> _negative;
        private readonly ReadOnlySpan<uint> _positive;
        private readonly int _negativeFirst;
        private readonly int _positiveFirst;
        private int _stage;
        private int _position;
        // PERF: kept as a double, the type of the rank it is compared with, so the walk does not
        // convert on every bin; counts stay exact below 2^53.
        private double _cumulative;
        private double _current;

        public RankWalker(DdSketch sketch, ReadOnlySpan<uint> negative, int negativeFirst, ReadOnlySpan<uint> positive, int positiveFirst)
        {
            _sketch = sketch;
            _negative = negative;
            _negativeFirst = negativeFirst;
            _positive = positive;
            _positiveFirst = positiveFirst;
            _position = _negative.Length - 1;
            _current = double.NaN;
        }

        /// <summary>The value of the first bin whose cumulative count exceeds <paramref name="rank"/>.</summary>
        public double ValueAtRank(double rank)
        {
            if (_cumulative > rank)
            {
                return _current;
            }

            // Stage 0: negative bins, largest magnitude (smallest value) first.
            if (_stage == 0)
            {
                for (; _position >= 0; _position--)
                {
                    uint c = _negative[_position];
                    if (c == 0)
                    {
                        continue;
                    }

                    _cumulative += c;
                    if (_cumulative > rank)
                    {
                        _current = -_sketch.RepresentativeOf(_negativeFirst + _position);
                        _position--;
                        return _current;
                    }
                }

                _stage = 1;
            }

            if (_stage == 1)
            {
                _stage = 2;
                _position = 0;
                if (_sketch._zeroCount > 0)
                {
                    _cumulative += _sketch._zeroCount;
                    if (_cumulative > rank)
                    {
                        _current = 0;
                        return _current;
                    }
                }
            }

            for (; _position < _positive.Length; _position++)
            {
                uint c = _positive[_position];
                if (c == 0)
                {
                    continue;
                }

                _cumulative += c;
                if (_cumulative > rank)
                {
                    _current = _sketch.RepresentativeOf(_positiveFirst + _position);
                    _position++;
                    return _current;
                }
            }

            // Only reachable when saturated bins dropped counts: the top rank is the maximum.
            _current = _sketch._max;
            return _current;
        }
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

        ReadOnlySpan<uint> a = _positive.OccupiedCounts(out int af);
        ReadOnlySpan<uint> b = other._positive.OccupiedCounts(out int bf);
        if (!a.SequenceEqual(b) || (a.Length > 0 && af != bf))
        {
            return false;
        }

        a = _negative.OccupiedCounts(out af);
        b = other._negative.OccupiedCounts(out bf);
        return a.SequenceEqual(b) && (a.Length == 0 || af == bf);
    }

    /// <summary>The exact number of bytes <see cref="Serialize(Span{byte})"/> writes.</summary>
    public int GetSerializedSize()
    {
        int size = 1 + 1 + 8 + VarInt.SizeOf((ulong)_maxBins) + VarInt.SizeOf(_count) + VarInt.SizeOf(_zeroCount);
        if (_count > 0)
        {
            size += 16;
        }

        ReadOnlySpan<uint> negative = _negative.OccupiedCounts(out int negativeFirst);
        ReadOnlySpan<uint> positive = _positive.OccupiedCounts(out int positiveFirst);
        if (IsSparse(positive, negative))
        {
            return size + SparseStoreSize(positive, positiveFirst) + SparseStoreSize(negative, negativeFirst);
        }

        return size + DenseStoreSize(positive, positiveFirst) + DenseStoreSize(negative, negativeFirst);

        static int DenseStoreSize(ReadOnlySpan<uint> counts, int first)
        {
            int size = VarInt.SizeOf((ulong)counts.Length);
            if (counts.Length > 0)
            {
                size += VarInt.SizeOf(VarInt.ZigZag(first));
                foreach (uint c in counts)
                {
                    size += VarInt.SizeOf(c);
                }
            }

            return size;
        }
    }

    /// <summary>An upper bound of the bytes <see cref="WriteSummary"/> writes, from array sizes alone.</summary>
    internal int SummaryBound => 1 + 1 + 8 + (3 * VarInt.MaxLength) + 16 + (2 * (5 + 5 + 5)) + (10 * (_positive.Capacity + _negative.Capacity));

    /// <summary>
    /// What a closed window needs of its sketch: the quantiles and the serialized bytes, from one
    /// look at the occupied bin ranges. <paramref name="destination"/> holds at least <see cref="SummaryBound"/> bytes.
    /// </summary>
    /// <returns>The number of bytes written.</returns>
    internal int WriteSummary(ReadOnlySpan<double> sortedQuantiles, Span<double> results, Span<byte> destination)
    {
        ReadOnlySpan<uint> negative = _negative.OccupiedCounts(out int negativeFirst);
        ReadOnlySpan<uint> positive = _positive.OccupiedCounts(out int positiveFirst);
        if (_count == 0)
        {
            results[..sortedQuantiles.Length].Fill(double.NaN);
        }
        else if (negative.IsEmpty && sortedQuantiles.Length <= 8)
        {
            // PERF: the usual window of one sign: the quantiles come out of the same pass over the
            // bins that serializes them (WriteSummaryPositive). Same answers as WalkQuantiles.
            return WriteSummaryPositive(sortedQuantiles, results, destination, positive, positiveFirst);
        }
        else
        {
            WalkQuantiles(sortedQuantiles, results, negative, negativeFirst, positive, positiveFirst);
        }

        return SerializeCore(destination, negative, negativeFirst, positive, positiveFirst);
    }

    /// <summary>
    /// <see cref="WriteSummary"/> for a non-empty sketch without negative values: writes the layout of
    /// <see cref="SerializeCore"/> while walking the positive bins once for the quantiles.
    /// </summary>
    /// <remarks>
    /// A rank <c>r = q (n - 1)</c> is answered by the first bin whose cumulative count exceeds it; for
    /// integer cumulative counts that is "exceeds <c>floor(r)</c>", so the walk compares integers.
    /// </remarks>
    private int WriteSummaryPositive(ReadOnlySpan<double> quantiles, Span<double> results, Span<byte> destination, ReadOnlySpan<uint> positive, int positiveFirst)
    {
        int n = quantiles.Length;
        Span<ulong> thresholds = stackalloc ulong[8];
        int from = 0;
        int to = n;
        while (from < n && quantiles[from] == 0)
        {
            results[from++] = _min;
        }

        while (to > from && quantiles[to - 1] == 1)
        {
            results[--to] = _max;
        }

        for (int k = from; k < to; k++)
        {
            thresholds[k] = (ulong)(quantiles[k] * (_count - 1));
        }

        int next = from;
        ulong cumulative = _zeroCount;
        while (next < to && cumulative > thresholds[next])
        {
            results[next++] = Math.Clamp(0, _min, _max);
        }

        int occupied = positive.Length - positive.Count(0u);
        if (2 * occupied < positive.Length)
        {
            return WriteSparsePositive(results, destination, positive, positiveFirst, occupied, thresholds, next, to, cumulative);
        }

        // Dense: most bins of the range hold a count (a window of many points), so one plain walk.
        int p = WriteHeader(destination, 0);
        p += WriteDenseStore(destination[p..], positive, positiveFirst);
        for (int i = 0; i < positive.Length && next < to; i++)
        {
            cumulative += positive[i];
            while (next < to && cumulative > thresholds[next])
            {
                results[next++] = Math.Clamp(RepresentativeOf(positiveFirst + i), _min, _max);
            }
        }

        // Only short of the top when saturated bins dropped counts: those ranks answer the maximum.
        while (next < to)
        {
            results[next++] = _max;
        }

        destination[p++] = 0; // an empty negative store
        return p;
    }

    /// <summary>
    /// The sparse layout of a positive-only sketch, and the quantiles, from one pass that visits only
    /// occupied bins: sixteen bins are tested at a time and the set bits of the mask are walked.
    /// </summary>
    private int WriteSparsePositive(Span<double> results, Span<byte> destination, ReadOnlySpan<uint> positive, int positiveFirst, int occupied, ReadOnlySpan<ulong> thresholds, int next, int to, ulong cumulative)
    {
        int p = WriteHeader(destination, SparseStoresFlag);
        p += VarInt.Write(destination[p..], (ulong)occupied);
        p += VarInt.Write(destination[p..], VarInt.ZigZag(positiveFirst));
        ref uint bins = ref MemoryMarshal.GetReference(positive);

        // The occupied range starts with an occupied bin: its count, then (gap, count) pairs.
        uint first = bins;
        p += WriteSmall(destination, p, first);
        cumulative += first;
        ulong nextThreshold = NextThreshold(thresholds, ref next, to, cumulative, results, RepresentativeOf(positiveFirst));
        int previous = 0;
        for (int i = 0; i < positive.Length; i += 16)
        {
            uint mask;
            if (i + 16 <= positive.Length)
            {
                // Sixteen bins a mask: fewer mask loops, whose exits are hard to predict.
                mask = ~(Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)i), Vector128<uint>.Zero).ExtractMostSignificantBits()
                    | (Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)(i + 4)), Vector128<uint>.Zero).ExtractMostSignificantBits() << 4)
                    | (Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)(i + 8)), Vector128<uint>.Zero).ExtractMostSignificantBits() << 8)
                    | (Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)(i + 12)), Vector128<uint>.Zero).ExtractMostSignificantBits() << 12)) & 0xFFFF;
            }
            else
            {
                mask = 0;
                for (int j = i; j < positive.Length; j++)
                {
                    mask |= (Unsafe.Add(ref bins, j) != 0 ? 1u : 0u) << (j - i);
                }
            }

            if (i == 0)
            {
                mask &= ~1u; // the first bin is written above
            }

            while (mask != 0)
            {
                int j = i + System.Numerics.BitOperations.TrailingZeroCount(mask);
                mask &= mask - 1;
                uint c = Unsafe.Add(ref bins, j);
                uint gap = (uint)(j - previous);
                if ((gap | c) < 0x80)
                {
                    // Both one-byte varints: one two-byte store.
                    Unsafe.WriteUnaligned(ref destination[p + 1], (byte)c);
                    destination[p] = (byte)gap;
                    p += 2;
                }
                else
                {
                    p += WriteSmall(destination, p, gap);
                    p += WriteSmall(destination, p, c);
                }

                previous = j;
                cumulative += c;
                if (cumulative > nextThreshold)
                {
                    nextThreshold = NextThreshold(thresholds, ref next, to, cumulative, results, RepresentativeOf(positiveFirst + j));
                }
            }
        }

        // Only short of the top when saturated bins dropped counts: those ranks answer the maximum.
        while (next < to)
        {
            results[next++] = _max;
        }

        destination[p++] = 0; // an empty negative store
        return p;

        // Answers every pending rank the cumulative count now exceeds with this bin's value (clamped
        // to the extremes); returns the next rank still pending, or the largest value if none is.
        ulong NextThreshold(ReadOnlySpan<ulong> thresholds, ref int next, int to, ulong cumulative, Span<double> results, double representative)
        {
            while (next < to && cumulative > thresholds[next])
            {
                results[next++] = Math.Clamp(representative, _min, _max);
            }

            return next < to ? thresholds[next] : ulong.MaxValue;
        }

        static int WriteSmall(Span<byte> destination, int at, uint value)
        {
            if (value < 0x80)
            {
                destination[at] = (byte)value;
                return 1;
            }

            return VarInt.Write(destination[at..], value);
        }
    }

    /// <summary>An upper bound of <see cref="GetSerializedSize"/>, computed without visiting the bins.</summary>
    public int GetMaxSerializedSize()
    {
        int bins = _positive.OccupiedCounts(out _).Length + _negative.OccupiedCounts(out _).Length;
        // version, flags, alpha, three varints, min and max, two store headers (length, first index,
        // first count), at most ten bytes a bin (a sparse gap and count).
        return 1 + 1 + 8 + (3 * VarInt.MaxLength) + 16 + (2 * (5 + 5 + 5)) + (10 * bins);
    }

    /// <summary>Writes the sketch in the versioned binary layout of docs/statistics.md.</summary>
    /// <returns>The number of bytes written.</returns>
    public int Serialize(Span<byte> destination)
    {
        // PERF: a destination at least as large as the cheap upper bound skips the exact sizing
        // pass over the bins; only a tight destination pays for it.
        if (destination.Length < GetMaxSerializedSize())
        {
            int size = GetSerializedSize();
            if (destination.Length < size)
            {
                throw new ArgumentException($"Destination holds {destination.Length} bytes; the sketch needs {size}.", nameof(destination));
            }
        }

        ReadOnlySpan<uint> negative = _negative.OccupiedCounts(out int negativeFirst);
        ReadOnlySpan<uint> positive = _positive.OccupiedCounts(out int positiveFirst);
        return SerializeCore(destination, negative, negativeFirst, positive, positiveFirst);
    }

    private int SerializeCore(Span<byte> destination, ReadOnlySpan<uint> negative, int negativeFirst, ReadOnlySpan<uint> positive, int positiveFirst)
    {
        bool sparse = IsSparse(positive, negative);
        int p = WriteHeader(destination, sparse ? SparseStoresFlag : (byte)0);
        if (sparse)
        {
            p += WriteSparseStore(destination[p..], positive, positiveFirst);
            p += WriteSparseStore(destination[p..], negative, negativeFirst);
        }
        else
        {
            p += WriteDenseStore(destination[p..], positive, positiveFirst);
            p += WriteDenseStore(destination[p..], negative, negativeFirst);
        }

        return p;
    }

    /// <summary>
    /// The layout rule: stores are written sparse when fewer than half the bins of their occupied
    /// ranges hold a count (a window of a few points over a wide range), dense otherwise.
    /// </summary>
    private static bool IsSparse(ReadOnlySpan<uint> positive, ReadOnlySpan<uint> negative)
    {
        int range = positive.Length + negative.Length;
        int occupied = range - positive.Count(0u) - negative.Count(0u);
        return 2 * occupied < range;
    }

    private static int WriteDenseStore(Span<byte> destination, ReadOnlySpan<uint> counts, int first)
    {
        int p = VarInt.Write(destination, (ulong)counts.Length);
        if (counts.Length > 0)
        {
            p += VarInt.Write(destination[p..], VarInt.ZigZag(first));
            foreach (uint c in counts)
            {
                // PERF: most window bins hold fewer than 128 values: one byte, no call.
                if (c < 0x80)
                {
                    destination[p++] = (byte)c;
                }
                else
                {
                    p += VarInt.Write(destination[p..], c);
                }
            }
        }

        return p;
    }

    /// <summary>Occupied bins only: their number, the first index, its count, then (gap, count) pairs.</summary>
    private static int WriteSparseStore(Span<byte> destination, ReadOnlySpan<uint> counts, int first)
    {
        int occupied = counts.Length - counts.Count(0u);
        int p = VarInt.Write(destination, (ulong)occupied);
        if (occupied > 0)
        {
            // The occupied range starts and ends with an occupied bin.
            p += VarInt.Write(destination[p..], VarInt.ZigZag(first));
            p += VarInt.Write(destination[p..], counts[0]);
            int previous = 0;
            for (int i = 1; i < counts.Length; i++)
            {
                uint c = counts[i];
                if (c != 0)
                {
                    p += VarInt.Write(destination[p..], (ulong)(i - previous));
                    p += VarInt.Write(destination[p..], c);
                    previous = i;
                }
            }
        }

        return p;
    }

    private static int SparseStoreSize(ReadOnlySpan<uint> counts, int first)
    {
        int occupied = counts.Length - counts.Count(0u);
        int size = VarInt.SizeOf((ulong)occupied);
        if (occupied > 0)
        {
            size += VarInt.SizeOf(VarInt.ZigZag(first)) + VarInt.SizeOf(counts[0]);
            int previous = 0;
            for (int i = 1; i < counts.Length; i++)
            {
                if (counts[i] != 0)
                {
                    size += VarInt.SizeOf((ulong)(i - previous)) + VarInt.SizeOf(counts[i]);
                    previous = i;
                }
            }
        }

        return size;
    }

    /// <summary>Writes everything before the bin stores: version, flags, alpha, limits, counts, extremes.</summary>
    private int WriteHeader(Span<byte> destination, byte flags)
    {
        int p = 0;
        destination[p++] = SerializationVersion;
        destination[p++] = flags;
        BinaryPrimitives.WriteDoubleLittleEndian(destination[p..], _alpha);
        p += 8;
        p += VarInt.Write(destination[p..], (ulong)_maxBins);
        p += VarInt.Write(destination[p..], _count);
        p += VarInt.Write(destination[p..], _zeroCount);
        if (_count > 0)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(destination[p..], _min);
            BinaryPrimitives.WriteDoubleLittleEndian(destination[(p + 8)..], _max);
            p += 16;
        }

        return p;
    }

    /// <summary>Writes the sketch into a buffer writer.</summary>
    public void Serialize(IBufferWriter<byte> writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        int size = GetSerializedSize();
        int written = Serialize(writer.GetSpan(size));
        writer.Advance(written);
    }

    /// <summary>Serializes into a new array.</summary>
    public byte[] ToArray()
    {
        var bytes = new byte[GetSerializedSize()];
        Serialize(bytes);
        return bytes;
    }

    /// <summary>Reads a sketch written by <see cref="Serialize(Span{byte})"/>.</summary>
    /// <remarks>
    /// Allocates the sketch and one array per sign sized by what the bytes hold: at most
    /// <c>4 × maxBinsPerSign</c> bytes a sign, and for a dense store at most 4 bytes per byte of input
    /// (docs/statistics.md, "What a reader allocates").
    /// </remarks>
    /// <exception cref="FormatException">The bytes are not a valid sketch; the message says why.</exception>
    public static DdSketch Deserialize(ReadOnlySpan<byte> source) => Deserialize(source, MaxMaxBins);

    /// <summary>Reads a sketch, refusing one whose bin limit exceeds <paramref name="maxBinsPerSign"/>.</summary>
    /// <param name="source">The serialized sketch.</param>
    /// <param name="maxBinsPerSign">
    /// The largest bin limit accepted, which caps what the read allocates at about
    /// <c>8 × maxBinsPerSign</c> bytes: a reader of untrusted bytes passes the limit its own sketches use.
    /// </param>
    /// <exception cref="FormatException">The bytes are not a valid sketch, or declare a larger bin limit.</exception>
    public static DdSketch Deserialize(ReadOnlySpan<byte> source, int maxBinsPerSign)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBinsPerSign, MinMaxBins);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxBinsPerSign, MaxMaxBins);

        var reader = new SketchReader(source);
        byte version = reader.ReadByte();
        if (version != SerializationVersion)
        {
            throw new FormatException($"Unsupported sketch version {version}; this build reads version {SerializationVersion}.");
        }

        byte flags = reader.ReadByte();
        if ((flags & ~SparseStoresFlag) != 0)
        {
            throw new FormatException($"Unknown sketch flags 0x{flags:X2}.");
        }

        bool sparse = (flags & SparseStoresFlag) != 0;

        double alpha = reader.ReadDouble();
        if (!(alpha >= MinRelativeAccuracy && alpha <= MaxRelativeAccuracy))
        {
            throw new FormatException($"Sketch relative accuracy {alpha} is outside [{MinRelativeAccuracy}, {MaxRelativeAccuracy}].");
        }

        ulong maxBins = reader.ReadVarUInt();
        if (maxBins < MinMaxBins || maxBins > MaxMaxBins)
        {
            throw new FormatException($"Sketch bin limit {maxBins} is outside [{MinMaxBins}, {MaxMaxBins}].");
        }

        if (maxBins > (ulong)maxBinsPerSign)
        {
            throw new FormatException($"Sketch bin limit {maxBins} exceeds the {maxBinsPerSign} this reader accepts.");
        }

        ulong count = reader.ReadVarUInt();
        ulong zeroCount = reader.ReadVarUInt();
        if (zeroCount > count)
        {
            throw new FormatException($"Sketch zero count {zeroCount} exceeds its count {count}.");
        }

        double min = double.PositiveInfinity;
        double max = double.NegativeInfinity;
        if (count > 0)
        {
            min = reader.ReadDouble();
            max = reader.ReadDouble();
            if (!double.IsFinite(min) || !double.IsFinite(max) || min > max)
            {
                throw new FormatException($"Sketch extremes are invalid: min={min}, max={max}.");
            }
        }

        // A sketch read from bytes uses the shared table of representatives if one exists, but never
        // adds one: arbitrary accuracies in payloads would otherwise fill the bounded cache.
        var sketch = new DdSketch(alpha, (int)maxBins, addRepresentativeTable: false);
        ulong binned = reader.ReadStore(ref sketch._positive, sketch._maxBins, sparse);
        binned += reader.ReadStore(ref sketch._negative, sketch._maxBins, sparse);
        if (!reader.AtEnd)
        {
            throw new FormatException($"{reader.Remaining} unexpected bytes after the sketch.");
        }

        // Compared without adding: a zero count near 2^64 must not wrap the sum into agreement.
        if (binned > count - zeroCount || (count > 0 && binned == 0 && zeroCount == 0))
        {
            throw new FormatException($"Sketch count {count} does not match its bins ({binned}) and zero count ({zeroCount}).");
        }

        sketch._count = count;
        sketch._zeroCount = zeroCount;
        sketch._min = min;
        sketch._max = max;
        return sketch;
    }

    private ref struct SketchReader(ReadOnlySpan<byte> source)
    {
        private readonly ReadOnlySpan<byte> _source = source;
        private int _position;

        public readonly bool AtEnd => _position == _source.Length;

        public readonly int Remaining => _source.Length - _position;

        public byte ReadByte()
        {
            if (_position >= _source.Length)
            {
                throw Truncated();
            }

            return _source[_position++];
        }

        public double ReadDouble()
        {
            if (_source.Length - _position < 8)
            {
                throw Truncated();
            }

            double value = BinaryPrimitives.ReadDoubleLittleEndian(_source[_position..]);
            _position += 8;
            return value;
        }

        public ulong ReadVarUInt()
        {
            if (!VarInt.TryRead(_source[_position..], out ulong value, out int length))
            {
                throw new FormatException($"Malformed or truncated varint at byte {_position} of the sketch.");
            }

            _position += length;
            return value;
        }

        /// <summary>Reads one store into an unallocated <paramref name="store"/>; returns the sum of its counts.</summary>
        public ulong ReadStore(ref DdSketchBinStore store, int maxBins, bool sparse)
        {
            ulong length = ReadVarUInt();
            if (length == 0)
            {
                return 0;
            }

            return sparse ? ReadSparseStore(ref store, maxBins, length) : ReadDenseStore(ref store, maxBins, length);
        }

        private ulong ReadDenseStore(ref DdSketchBinStore store, int maxBins, ulong length)
        {
            if (length > (ulong)maxBins)
            {
                throw new FormatException($"Sketch store has {length} bins; its limit is {maxBins}.");
            }

            long first = VarInt.UnZigZag(ReadVarUInt());
            if (first < int.MinValue / 2 || first + (long)length > int.MaxValue / 2)
            {
                throw new FormatException($"Sketch bin index {first} is out of range.");
            }

            // Every bin takes at least one byte: a store longer than what is left is refused before
            // its array is allocated, so a dense store costs at most 4 bytes per byte of input.
            if (length > (ulong)Remaining)
            {
                throw new FormatException($"Sketch store has {length} bins but only {Remaining} bytes remain.");
            }

            Span<uint> bins = store.Allocate((int)first, (int)length);
            ulong total = 0;
            for (int i = 0; i < bins.Length; i++)
            {
                ulong c = ReadVarUInt();
                if (c > uint.MaxValue)
                {
                    throw new FormatException($"Sketch bin count {c} exceeds 2^32 - 1.");
                }

                bins[i] = (uint)c;
                total += c;
            }

            return total;
        }

        private ulong ReadSparseStore(ref DdSketchBinStore store, int maxBins, ulong occupied)
        {
            if (occupied > (ulong)maxBins)
            {
                throw new FormatException($"Sketch store has {occupied} occupied bins; its limit is {maxBins}.");
            }

            // Two passes: the first checks every pair and finds the span without allocating, so the
            // array is allocated once, exactly as long as the span (at most maxBins), and only for a
            // store that is valid to its end.
            SketchReader scan = this;
            scan.ReadSparseBins(maxBins, occupied, out long first, out long last, []);
            Span<uint> bins = store.Allocate((int)first, (int)(last - first + 1));
            return ReadSparseBins(maxBins, occupied, out _, out _, bins);
        }

        /// <summary>Reads the (gap, count) pairs of a sparse store, checking each; fills <paramref name="bins"/> unless empty.</summary>
        private ulong ReadSparseBins(int maxBins, ulong occupied, out long first, out long last, Span<uint> bins)
        {
            first = VarInt.UnZigZag(ReadVarUInt());
            if (first < int.MinValue / 2 || first > int.MaxValue / 2)
            {
                throw new FormatException($"Sketch bin index {first} is out of range.");
            }

            long index = first;
            ulong total = 0;
            for (ulong i = 0; i < occupied; i++)
            {
                if (i > 0)
                {
                    ulong gap = ReadVarUInt();
                    if (gap == 0 || gap > (ulong)maxBins)
                    {
                        throw new FormatException($"Sketch bin gap {gap} is not within [1, {maxBins}].");
                    }

                    index += (long)gap;
                    if (index - first >= maxBins)
                    {
                        throw new FormatException($"Sketch store spans more than its limit of {maxBins} bins.");
                    }
                }

                ulong c = ReadVarUInt();
                if (c == 0 || c > uint.MaxValue)
                {
                    throw new FormatException($"Sketch sparse bin count {c} is not within [1, 2^32 - 1].");
                }

                if (!bins.IsEmpty)
                {
                    bins[(int)(index - first)] = (uint)c;
                }

                total += c;
            }

            last = index;
            return total;
        }

        private readonly FormatException Truncated() => new($"Sketch bytes end early at byte {_position}.");
    }
}
