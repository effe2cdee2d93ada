using System.Buffers.Binary;

namespace Monitoring.Stream.Statistics;

// Reading the versioned binary layout, refusing what is not a valid sketch and bounding what a payload can allocate.
public sealed partial class DdSketch
{
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
        SketchHeader header = reader.ReadHeader(maxBinsPerSign);
        ulong count = header.Count;
        ulong zeroCount = header.ZeroCount;
        double min = header.Min;
        double max = header.Max;
        double alpha = header.Alpha;
        int maxBins = header.MaxBins;
        bool sparse = header.Sparse;

        // A sketch read from bytes uses the shared table of representatives if one exists, but never
        // adds one: arbitrary accuracies in payloads would otherwise fill the bounded cache.
        var sketch = new DdSketch(alpha, maxBins, addRepresentativeTable: false);
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

    /// <summary>Adds every value of a sketch serialized by <see cref="Serialize(Span{byte})"/> to this sketch, without building a sketch from the bytes.</summary>
    /// <remarks>
    /// The same as <c>Merge(Deserialize(source))</c>, with no allocation beyond this sketch's own bin
    /// growth. The bytes are checked to their end before anything changes, so bytes that are refused leave
    /// this sketch as it was.
    /// </remarks>
    /// <exception cref="FormatException">The bytes are not a valid sketch.</exception>
    /// <exception cref="ArgumentException">The serialized sketch differs from this one in relative accuracy or bin limit.</exception>
    /// <exception cref="OverflowException">The counts together exceed 2^64 - 1; this sketch is left unchanged.</exception>
    public void MergeSerialized(ReadOnlySpan<byte> source)
    {
        // First pass: check everything, change nothing.
        var check = new SketchReader(source);
        SketchHeader header = check.ReadHeader(MaxMaxBins);
        if (header.Alpha != _alpha || header.MaxBins != _maxBins)
        {
            throw new ArgumentException(
                $"Cannot merge a sketch with alpha={header.Alpha}, maxBins={header.MaxBins} into one with alpha={_alpha}, maxBins={_maxBins}.",
                nameof(source));
        }

        var none = default(DdSketchBinStore);
        ulong binned = check.MergeStore(ref none, _maxBins, header.Sparse, collapseHighest: false, apply: false);
        binned += check.MergeStore(ref none, _maxBins, header.Sparse, collapseHighest: true, apply: false);
        if (!check.AtEnd)
        {
            throw new FormatException($"{check.Remaining} unexpected bytes after the sketch.");
        }

        if (binned > header.Count - header.ZeroCount || (header.Count > 0 && binned == 0 && header.ZeroCount == 0))
        {
            throw new FormatException($"Sketch count {header.Count} does not match its bins ({binned}) and zero count ({header.ZeroCount}).");
        }

        if (header.Count == 0)
        {
            return;
        }

        if (_count > ulong.MaxValue - header.Count)
        {
            throw new OverflowException(
                $"Merging would take the sketch's count past 2^64 - 1 ({_count} + {header.Count}); the sketch is unchanged.");
        }

        // Second pass over bytes known to be valid: add the bins.
        var apply = new SketchReader(source);
        apply.ReadHeader(MaxMaxBins);
        apply.MergeStore(ref _positive, _maxBins, header.Sparse, collapseHighest: false, apply: true);
        apply.MergeStore(ref _negative, _maxBins, header.Sparse, collapseHighest: true, apply: true);
        _zeroCount += header.ZeroCount;
        _count += header.Count;
        if (header.Min < _min)
        {
            _min = header.Min;
        }

        if (header.Max > _max)
        {
            _max = header.Max;
        }
    }

    /// <summary>What precedes the bin stores of a serialized sketch.</summary>
    private readonly record struct SketchHeader(double Alpha, int MaxBins, bool Sparse, ulong Count, ulong ZeroCount, double Min, double Max);

    private ref struct SketchReader(ReadOnlySpan<byte> source)
    {
        private readonly ReadOnlySpan<byte> _source = source;
        private int _position;

        public readonly bool AtEnd => _position == _source.Length;

        public readonly int Remaining => _source.Length - _position;

        /// <summary>Reads and checks everything before the bin stores; refuses a bin limit above <paramref name="maxBinsPerSign"/>.</summary>
        public SketchHeader ReadHeader(int maxBinsPerSign)
        {
            byte version = ReadByte();
            if (version != SerializationVersion)
            {
                throw new FormatException($"Unsupported sketch version {version}; this build reads version {SerializationVersion}.");
            }

            byte flags = ReadByte();
            if ((flags & ~SparseStoresFlag) != 0)
            {
                throw new FormatException($"Unknown sketch flags 0x{flags:X2}.");
            }

            double alpha = ReadDouble();
            if (!(alpha >= MinRelativeAccuracy && alpha <= MaxRelativeAccuracy))
            {
                throw new FormatException($"Sketch relative accuracy {alpha} is outside [{MinRelativeAccuracy}, {MaxRelativeAccuracy}].");
            }

            ulong maxBins = ReadVarUInt();
            if (maxBins < MinMaxBins || maxBins > MaxMaxBins)
            {
                throw new FormatException($"Sketch bin limit {maxBins} is outside [{MinMaxBins}, {MaxMaxBins}].");
            }

            if (maxBins > (ulong)maxBinsPerSign)
            {
                throw new FormatException($"Sketch bin limit {maxBins} exceeds the {maxBinsPerSign} this reader accepts.");
            }

            ulong count = ReadVarUInt();
            ulong zeroCount = ReadVarUInt();
            if (zeroCount > count)
            {
                throw new FormatException($"Sketch zero count {zeroCount} exceeds its count {count}.");
            }

            double min = double.PositiveInfinity;
            double max = double.NegativeInfinity;
            if (count > 0)
            {
                min = ReadDouble();
                max = ReadDouble();
                if (!double.IsFinite(min) || !double.IsFinite(max) || min > max)
                {
                    throw new FormatException($"Sketch extremes are invalid: min={min}, max={max}.");
                }
            }

            return new SketchHeader(alpha, (int)maxBins, (flags & SparseStoresFlag) != 0, count, zeroCount, min, max);
        }

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
            // PERF: most counts and gaps of a window's bins are below 128: one byte, no call.
            if ((uint)_position < (uint)_source.Length && _source[_position] < 0x80)
            {
                return _source[_position++];
            }

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

        /// <summary>
        /// Reads one store with the checks of <see cref="ReadStore"/>; when <paramref name="apply"/> is set, adds
        /// each bin to <paramref name="target"/>. Returns the sum of its counts.
        /// </summary>
        public ulong MergeStore(ref DdSketchBinStore target, int maxBins, bool sparse, bool collapseHighest, bool apply)
        {
            ulong length = ReadVarUInt();
            if (length == 0)
            {
                return 0;
            }

            if (length > (ulong)maxBins)
            {
                throw new FormatException($"Sketch store has {length} bins; its limit is {maxBins}.");
            }

            if (sparse && !apply)
            {
                var none = default(DdSketchBinStore);
                return ReadSparseBins(maxBins, length, out _, out _, out _, ref none, fill: false);
            }

            long index = VarInt.UnZigZag(ReadVarUInt());
            if (index < int.MinValue / 2 || (sparse ? index > int.MaxValue / 2 : index + (long)length > int.MaxValue / 2))
            {
                throw new FormatException($"Sketch bin index {index} is out of range.");
            }

            ulong total = 0;
            for (ulong i = 0; i < length; i++)
            {
                if (sparse && i > 0)
                {
                    // Only reached when applying, after the first pass checked every gap.
                    index += (long)ReadVarUInt();
                }

                ulong c = ReadVarUInt();
                if (c > uint.MaxValue)
                {
                    throw new FormatException($"Sketch bin count {c} exceeds 2^32 - 1.");
                }

                if (apply)
                {
                    target.Add((int)index, (uint)c, maxBins, collapseHighest);
                }

                total += c;
                if (!sparse)
                {
                    index++;
                }
            }

            return total;
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

            // Two passes: the first checks every count and finds the largest, so the counters are allocated
            // once, as narrow as the counts allow (a window's sketch: one byte a bin).
            SketchReader scan = this;
            ulong largest = 0;
            for (ulong i = 0; i < length; i++)
            {
                ulong c = scan.ReadVarUInt();
                if (c > uint.MaxValue)
                {
                    throw new FormatException($"Sketch bin count {c} exceeds 2^32 - 1.");
                }

                largest = Math.Max(largest, c);
            }

            store.Allocate((int)first, (int)length, largest);
            ulong total = 0;
            for (int i = 0; i < (int)length; i++)
            {
                ulong c = ReadVarUInt();
                store.SetCount(i, (uint)c);
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
            var none = default(DdSketchBinStore);
            scan.ReadSparseBins(maxBins, occupied, out long first, out long last, out ulong largest, ref none, fill: false);
            store.Allocate((int)first, (int)(last - first + 1), largest);
            return ReadSparseBins(maxBins, occupied, out _, out _, out _, ref store, fill: true);
        }

        /// <summary>Reads the (gap, count) pairs of a sparse store, checking each; with <paramref name="fill"/>, sets them in <paramref name="store"/>.</summary>
        private ulong ReadSparseBins(int maxBins, ulong occupied, out long first, out long last, out ulong largest, ref DdSketchBinStore store, bool fill)
        {
            largest = 0;
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

                if (fill)
                {
                    store.SetCount((int)(index - first), (uint)c);
                }

                largest = Math.Max(largest, c);

                total += c;
            }

            last = index;
            return total;
        }

        private readonly FormatException Truncated() => new($"Sketch bytes end early at byte {_position}.");
    }
}
