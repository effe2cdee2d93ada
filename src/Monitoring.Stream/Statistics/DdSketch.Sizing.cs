namespace Monitoring.Stream.Statistics;

// Sizing: exact and upper-bound byte counts of the serialized layout.
public sealed partial class DdSketch
{
    /// <summary>Bytes of the layout outside the bins at most: version, flags, alpha, three varints, min and max, two store headers (length, first index, first count).</summary>
    private const int MaxFixedBytes = 1 + 1 + 8 + (3 * VarInt.MaxLength) + 16 + (2 * (5 + 5 + 5));

    /// <summary>Bytes a bin takes at most: a sparse gap and count.</summary>
    private const int MaxBytesPerBin = 10;

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
        if (IsSparse(positive, negative, out int positiveOccupied, out int negativeOccupied))
        {
            return size + SparseStoreSize(positive, positiveFirst, positiveOccupied) + SparseStoreSize(negative, negativeFirst, negativeOccupied);
        }

        return size + DenseStoreSize(positive, positiveFirst) + DenseStoreSize(negative, negativeFirst);
    }

    /// <summary>An upper bound of <see cref="GetSerializedSize"/>, computed without visiting the bins.</summary>
    public int GetMaxSerializedSize()
    {
        int bins = _positive.OccupiedCounts(out _).Length + _negative.OccupiedCounts(out _).Length;
        return MaxFixedBytes + (MaxBytesPerBin * bins);
    }

    /// <summary>An upper bound of the bytes <see cref="WriteSummary"/> writes, from array sizes alone.</summary>
    internal int SummaryBound => MaxFixedBytes + (MaxBytesPerBin * (_positive.Capacity + _negative.Capacity));

    private static int DenseStoreSize(ReadOnlySpan<uint> counts, int first)
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

    private static int SparseStoreSize(ReadOnlySpan<uint> counts, int first, int occupied)
    {
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
}
