using System.Numerics;
using System.Runtime.CompilerServices;

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

        DdSketchBinStore.Occupied negative = _negative.GetOccupied();
        DdSketchBinStore.Occupied positive = _positive.GetOccupied();
        bool sparse = IsSparse(positive, negative, out int positiveOccupied, out int negativeOccupied);
        return size + StoreSize(positive, sparse, positiveOccupied) + StoreSize(negative, sparse, negativeOccupied);
    }

    private static int StoreSize(DdSketchBinStore.Occupied store, bool sparse, int occupied) => store.Shift switch
    {
        0 => sparse ? SparseStoreSize(store.As<byte>(), store.First, occupied) : DenseStoreSize(store.As<byte>(), store.First),
        1 => sparse ? SparseStoreSize(store.As<ushort>(), store.First, occupied) : DenseStoreSize(store.As<ushort>(), store.First),
        _ => sparse ? SparseStoreSize(store.As<uint>(), store.First, occupied) : DenseStoreSize(store.As<uint>(), store.First),
    };

    /// <summary>An upper bound of <see cref="GetSerializedSize"/>, computed without visiting the bins.</summary>
    public int GetMaxSerializedSize()
    {
        int bins = _positive.OccupiedLength + _negative.OccupiedLength;
        return MaxFixedBytes + (MaxBytesPerBin * bins);
    }

    /// <summary>An upper bound of the bytes <see cref="WriteSummary"/> writes, from array sizes alone.</summary>
    internal int SummaryBound
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => MaxFixedBytes + (MaxBytesPerBin * (_positive.Capacity + _negative.Capacity));
    }

    private static int DenseStoreSize<T>(ReadOnlySpan<T> counts, int first)
        where T : unmanaged, IBinaryInteger<T>
    {
        int size = VarInt.SizeOf((ulong)counts.Length);
        if (counts.Length > 0)
        {
            size += VarInt.SizeOf(VarInt.ZigZag(first));
            foreach (T c in counts)
            {
                size += VarInt.SizeOf(ulong.CreateTruncating(c));
            }
        }

        return size;
    }

    private static int SparseStoreSize<T>(ReadOnlySpan<T> counts, int first, int occupied)
        where T : unmanaged, IBinaryInteger<T>
    {
        int size = VarInt.SizeOf((ulong)occupied);
        if (occupied > 0)
        {
            size += VarInt.SizeOf(VarInt.ZigZag(first)) + VarInt.SizeOf(ulong.CreateTruncating(counts[0]));
            int previous = 0;
            for (int i = 1; i < counts.Length; i++)
            {
                if (counts[i] != T.Zero)
                {
                    size += VarInt.SizeOf((ulong)(i - previous)) + VarInt.SizeOf(ulong.CreateTruncating(counts[i]));
                    previous = i;
                }
            }
        }

        return size;
    }
}
