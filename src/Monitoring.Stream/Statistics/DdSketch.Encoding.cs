using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Monitoring.Stream.Statistics;

// Writing the versioned binary layout of docs/statistics.md: one dense and one sparse store encoder.
public sealed partial class DdSketch
{
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

        var none = new RankCursor();
        return WriteSketch(destination, _negative.GetOccupied(), _positive.GetOccupied(), ref none);
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

    /// <summary>
    /// Writes header and stores; <paramref name="ranks"/> is advanced over the positive store as it is
    /// written (its ranks below the positive store already answered), so a summary answers its
    /// quantiles in the same pass.
    /// </summary>
    private int WriteSketch(Span<byte> destination, DdSketchBinStore.Occupied negative, DdSketchBinStore.Occupied positive, ref RankCursor ranks)
    {
        bool sparse = IsSparse(positive, negative, out int positiveOccupied, out int negativeOccupied);
        int p = WriteHeader(destination, sparse ? SparseStoresFlag : (byte)0);
        var none = new RankCursor();
        p += WriteStore(destination[p..], positive, sparse, positiveOccupied, ref ranks);
        p += WriteStore(destination[p..], negative, sparse, negativeOccupied, ref none);
        return p;
    }

    /// <summary>Writes one store, dispatching once on its counter width.</summary>
    private int WriteStore(Span<byte> destination, DdSketchBinStore.Occupied store, bool sparse, int occupied, ref RankCursor ranks) => store.Shift switch
    {
        0 => sparse ? WriteSparseStore(destination, store.As<byte>(), store.First, occupied, ref ranks) : WriteDenseStore(destination, store.As<byte>(), store.First, ref ranks),
        1 => sparse ? WriteSparseStore(destination, store.As<ushort>(), store.First, occupied, ref ranks) : WriteDenseStore(destination, store.As<ushort>(), store.First, ref ranks),
        _ => sparse ? WriteSparseStore(destination, store.As<uint>(), store.First, occupied, ref ranks) : WriteDenseStore(destination, store.As<uint>(), store.First, ref ranks),
    };

    /// <summary>
    /// The layout rule: stores are written sparse when fewer than half the bins of their occupied
    /// ranges hold a count (a window of a few points over a wide range), dense otherwise.
    /// </summary>
    private static bool IsSparse(DdSketchBinStore.Occupied positive, DdSketchBinStore.Occupied negative, out int positiveOccupied, out int negativeOccupied)
    {
        positiveOccupied = positive.CountOccupied();
        negativeOccupied = negative.CountOccupied();
        return 2 * (positiveOccupied + negativeOccupied) < positive.Length + negative.Length;
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

    /// <summary>Every bin of the occupied range: its length, the first index, then one count per bin.</summary>
    private int WriteDenseStore<T>(Span<byte> destination, ReadOnlySpan<T> counts, int first, ref RankCursor ranks)
        where T : unmanaged, IBinaryInteger<T>
    {
        int p = VarInt.Write(destination, (ulong)counts.Length);
        if (counts.Length == 0)
        {
            return p;
        }

        p += VarInt.Write(destination[p..], VarInt.ZigZag(first));
        ulong cumulative = ranks.Cumulative;
        ulong threshold = ranks.Threshold;
        int i = 0;
        for (; i < counts.Length && threshold != ulong.MaxValue; i++)
        {
            uint c = uint.CreateTruncating(counts[i]);
            p += WriteSmall(destination, p, c);
            cumulative += c;
            if (cumulative > threshold)
            {
                threshold = ranks.Answer(cumulative, RepresentativeOf(first + i));
            }
        }

        ranks.Cumulative = cumulative;

        // PERF: every rank answered (or none asked, as in plain serialization): the rest only writes.
        foreach (T counter in counts[i..])
        {
            uint c = uint.CreateTruncating(counter);
            // Most window bins hold fewer than 128 values: one byte, no call.
            if (c < 0x80)
            {
                destination[p++] = (byte)c;
            }
            else
            {
                p += VarInt.Write(destination[p..], c);
            }
        }

        return p;
    }

    /// <summary>
    /// Occupied bins only: their number, the first index, its count, then (gap, count) pairs. One pass
    /// that visits only occupied bins: sixteen bins are tested at a time and the set bits of the mask
    /// are walked.
    /// </summary>
    private int WriteSparseStore<T>(Span<byte> destination, ReadOnlySpan<T> counts, int first, int occupied, ref RankCursor ranks)
        where T : unmanaged, IBinaryInteger<T>
    {
        int p = VarInt.Write(destination, (ulong)occupied);
        if (occupied == 0)
        {
            return p;
        }

        p += VarInt.Write(destination[p..], VarInt.ZigZag(first));
        ref T bins = ref MemoryMarshal.GetReference(counts);

        // The occupied range starts with an occupied bin: its count, then (gap, count) pairs.
        uint firstCount = uint.CreateTruncating(bins);
        p += WriteSmall(destination, p, firstCount);
        ulong cumulative = ranks.Cumulative + firstCount;
        ulong threshold = ranks.Threshold;
        if (cumulative > threshold)
        {
            threshold = ranks.Answer(cumulative, RepresentativeOf(first));
        }

        int previous = 0;
        for (int i = 0; i < counts.Length; i += 16)
        {
            uint mask;
            if (i + 16 <= counts.Length)
            {
                // Sixteen bins a mask: fewer mask loops, whose exits are hard to predict. One vector
                // compare for byte counters, two for 16-bit, four for 32-bit (the branches fold away
                // in each instantiation).
                if (Vector128<T>.Count == 16)
                {
                    mask = Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)i), Vector128<T>.Zero).ExtractMostSignificantBits();
                }
                else if (Vector128<T>.Count == 8)
                {
                    mask = Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)i), Vector128<T>.Zero).ExtractMostSignificantBits()
                        | (Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)(i + 8)), Vector128<T>.Zero).ExtractMostSignificantBits() << 8);
                }
                else
                {
                    mask = Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)i), Vector128<T>.Zero).ExtractMostSignificantBits()
                        | (Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)(i + 4)), Vector128<T>.Zero).ExtractMostSignificantBits() << 4)
                        | (Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)(i + 8)), Vector128<T>.Zero).ExtractMostSignificantBits() << 8)
                        | (Vector128.Equals(Vector128.LoadUnsafe(ref bins, (nuint)(i + 12)), Vector128<T>.Zero).ExtractMostSignificantBits() << 12);
                }

                mask = ~mask & 0xFFFF;
            }
            else
            {
                mask = 0;
                for (int j = i; j < counts.Length; j++)
                {
                    mask |= (Unsafe.Add(ref bins, j) != T.Zero ? 1u : 0u) << (j - i);
                }
            }

            if (i == 0)
            {
                mask &= ~1u; // the first bin is written above
            }

            while (mask != 0)
            {
                int j = i + BitOperations.TrailingZeroCount(mask);
                mask &= mask - 1;
                uint c = uint.CreateTruncating(Unsafe.Add(ref bins, j));
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
                if (cumulative > threshold)
                {
                    threshold = ranks.Answer(cumulative, RepresentativeOf(first + j));
                }
            }
        }

        ranks.Cumulative = cumulative;
        return p;
    }

    /// <summary>A varint, with the one-byte case (most bin counts and gaps of a window) inline.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int WriteSmall(Span<byte> destination, int at, uint value)
    {
        // PERF: most window bins hold fewer than 128 values: one byte, no call.
        if (value < 0x80)
        {
            destination[at] = (byte)value;
            return 1;
        }

        return VarInt.Write(destination[at..], value);
    }
}
