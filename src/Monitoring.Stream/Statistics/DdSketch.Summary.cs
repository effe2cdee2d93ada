using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Monitoring.Stream.Statistics;

// The window summary path: what a closed window needs of its sketch, in one pass.
public sealed partial class DdSketch
{
    /// <summary>Bins of the largest positive store the one-byte fast path takes (its occupancy bitmap lives on the stack).</summary>
    private const int FastSummaryMaxBins = 4096;

    /// <summary>
    /// What a closed window needs of its sketch: the quantiles and the serialized bytes, from one
    /// look at the occupied bin ranges. <paramref name="destination"/> holds at least <see cref="SummaryBound"/> bytes.
    /// </summary>
    /// <remarks>
    /// <para>The quantiles come out of the pass that writes the positive store (negative bins and the zero
    /// bin, below it in value, are counted first); answers and bytes are exactly those of
    /// <see cref="GetQuantiles"/> and <see cref="Serialize(Span{byte})"/> (tested).</para>
    /// <para>PERF: the destination comes first, so that it is passed in registers. Passed last (on the
    /// stack), the window writer's freshly made span was stored with a 4-byte store of its length and
    /// copied into the call's stack arguments with an 8-byte load, which cannot be forwarded from that
    /// store: each row waited there for every older store to reach the cache, the writer's hottest
    /// instruction.</para>
    /// </remarks>
    /// <returns>The number of bytes written.</returns>
    internal int WriteSummary(Span<byte> destination, ReadOnlySpan<double> sortedQuantiles, Span<double> results)
    {
        Span<ulong> thresholds = sortedQuantiles.Length <= RankCursor.StackQuantiles ? stackalloc ulong[RankCursor.StackQuantiles] : new ulong[sortedQuantiles.Length];
        var ranks = new RankCursor(this, sortedQuantiles, results, thresholds);
        DdSketchBinStore.Occupied negative = _negative.GetOccupied();
        int written;
        if (negative.Length == 0 && _positive.TryGetByteCounters(out byte[]? bins, out int offset) && bins.Length <= FastSummaryMaxBins
            && destination.Length >= SummaryBound && sortedQuantiles.Length <= RankCursor.StackQuantiles)
        {
            ranks.WalkNegativeAndZero(negative);
            written = WriteByteSummary(destination, bins, offset, ref ranks);
        }
        else
        {
            DdSketchBinStore.Occupied positive = _positive.GetOccupied();
            ranks.WalkNegativeAndZero(negative);
            written = WriteSketch(destination, negative, positive, ref ranks);
        }

        ranks.Finish();
        return written;
    }

    /// <summary>
    /// The common window sketch, written in one pass over its counters: no negative bins and one-byte
    /// positive counters. Bytes and answers are those of <see cref="WriteSketch"/>.
    /// </summary>
    /// <remarks>
    /// PERF: the general writer scans the counters four times (first occupied bin, last occupied bin,
    /// occupied count, then the write). Here one vector pass turns the whole array into a bitmap of
    /// occupied bins (a bit per bin, 32 bins a compare), which gives the occupied range and count by
    /// bit counting; the write then visits the set bits (sparse) or copies 32 counts a store where all
    /// are below 128 and no pending rank falls inside them (dense).
    /// </remarks>
    [SkipLocalsInit]
    private int WriteByteSummary(Span<byte> destination, byte[] bins, int offset, ref RankCursor ranks)
    {
        int length = bins.Length;
        int wordCount = (length + 31) >> 5;
        Span<uint> words = stackalloc uint[FastSummaryMaxBins / 32];
        ref byte start = ref MemoryMarshal.GetArrayDataReference(bins);
        int occupied = 0;
        int firstWord = -1;
        int lastWord = -1;
        for (int w = 0; w < wordCount; w++)
        {
            int at = w << 5;
            uint mask;
            if (at + 32 <= length)
            {
                mask = ~Vector256.Equals(Vector256.LoadUnsafe(ref start, (nuint)at), Vector256<byte>.Zero).ExtractMostSignificantBits();
            }
            else if (length >= 32)
            {
                // The last partial word: the final 32 counters, shifted down to the ones not seen yet.
                mask = ~Vector256.Equals(Vector256.LoadUnsafe(ref start, (nuint)(length - 32)), Vector256<byte>.Zero).ExtractMostSignificantBits()
                    >> (32 - (length - at));
            }
            else
            {
                mask = 0;
                for (int j = at; j < length; j++)
                {
                    mask |= (Unsafe.Add(ref start, j) != 0 ? 1u : 0u) << (j - at);
                }
            }

            words[w] = mask;
            occupied += BitOperations.PopCount(mask);
            lastWord = mask != 0 ? w : lastWord;
            firstWord = firstWord < 0 && mask != 0 ? w : firstWord;
        }

        if (occupied == 0)
        {
            // No positive bin (only zeros): the general writer's empty stores.
            return WriteSketch(destination, default, _positive.GetOccupied(), ref ranks);
        }

        int lo = (firstWord << 5) + BitOperations.TrailingZeroCount(words[firstWord]);
        int hi = (lastWord << 5) + 31 - BitOperations.LeadingZeroCount(words[lastWord]);
        bool sparse = 2 * occupied < hi - lo + 1;
        int p = WriteHeader(destination, sparse ? SparseStoresFlag : (byte)0);
        if (sparse)
        {
            // PERF: the set bits flattened into a list of bin positions first, so that the writing and the
            // rank loops below are counted loops (a loop over each word's bits mispredicted its exit once a
            // word). Each byte of a word is one table look-up: the positions of its set bits, widened and
            // offset, stored eight at once; the next byte's store starts after the ones that count. A loop
            // of eight bit-clearing steps a word had been a tenth of the window writer's samples.
            // Sized to the occupied bins (a few dozen), not to the largest store: a fixed 24 KB of positions
            // and running counts made every call probe six stack pages.
            Span<ushort> positions = stackalloc ushort[occupied + 8];
            ref ushort into = ref MemoryMarshal.GetReference(positions);
            ref ulong table = ref MemoryMarshal.GetArrayDataReference(s_bytePositions);
            int n = 0;
            for (int w = firstWord; w <= lastWord; w++)
            {
                uint mask = words[w];
                int wordStart = w << 5;
                n = PutBytePositions(ref into, n, ref table, mask & 0xFF, wordStart);
                n = PutBytePositions(ref into, n, ref table, (mask >> 8) & 0xFF, wordStart + 8);
                n = PutBytePositions(ref into, n, ref table, (mask >> 16) & 0xFF, wordStart + 16);
                n = PutBytePositions(ref into, n, ref table, mask >> 24, wordStart + 24);
            }

            // The running count after each occupied bin, padded to a whole vector with counts no rank reaches.
            Span<uint> cumulative = stackalloc uint[occupied + 8];
            p += WriteByteSparse(destination[p..], ref start, positions[..n], cumulative, offset);
            cumulative.Slice(n, 8).Fill(uint.MaxValue);
            ranks.AnswerFromCumulative(cumulative[..(n + 8)], n, positions, offset);
        }
        else
        {
            p += WriteByteDense(destination[p..], ref start, lo, hi, offset, ref ranks);
        }

        // The negative store: empty (its length, 0).
        destination[p++] = 0;
        return p;
    }

    /// <summary>
    /// The sparse positive store of the occupied bins at <paramref name="positions"/> (ascending): count,
    /// first index, first count, then (gap, count) pairs; the running count after each bin goes to
    /// <paramref name="cumulative"/>, for the ranks to be looked up after (<see cref="RankCursor.AnswerFromCumulative"/>).
    /// </summary>
    /// <remarks>
    /// PERF: a rank test per bin mispredicted at every crossing (four a sketch) and, with the call that
    /// answered it inside the loop, made the JIT keep the running count on the stack. A store per bin
    /// is cheaper; the ranks are then found without a branch per bin.
    /// </remarks>
    private static int WriteByteSparse(Span<byte> destination, ref byte bins, scoped ReadOnlySpan<ushort> positions, scoped Span<uint> cumulative, int offset)
    {
        int lo = positions[0];
        uint firstCount = Unsafe.Add(ref bins, lo);
        int p = VarInt.Write(destination, (ulong)positions.Length);
        p += VarInt.Write(destination[p..], VarInt.ZigZag(offset + lo));
        p += WriteSmall(destination, p, firstCount);
        ref byte output = ref MemoryMarshal.GetReference(destination);
        ref uint running = ref MemoryMarshal.GetReference(cumulative);
        _ = cumulative[positions.Length - 1];
        running = firstCount;
        uint sum = firstCount;
        int previous = lo;
        for (int k = 1; k < positions.Length; k++)
        {
            int j = positions[k];
            uint c = Unsafe.Add(ref bins, j);
            uint gap = (uint)(j - previous);
            previous = j;
            sum += c;
            Unsafe.Add(ref running, k) = sum;
            if ((gap | c) < 0x80)
            {
                // Both one-byte varints. The caller's destination holds SummaryBound bytes: room for
                // every bin of the array, so these writes need no bounds check.
                Unsafe.Add(ref output, p) = (byte)gap;
                Unsafe.Add(ref output, p + 1) = (byte)c;
                p += 2;
            }
            else
            {
                p = PutVarInt(ref output, p, gap);
                p = PutVarInt(ref output, p, c);
            }
        }

        return p;
    }

    /// <summary>The dense positive store: length, first index, then the count of every bin from <paramref name="lo"/> to <paramref name="hi"/>.</summary>
    private int WriteByteDense(Span<byte> destination, ref byte bins, int lo, int hi, int offset, ref RankCursor ranks)
    {
        int p = VarInt.Write(destination, (ulong)(hi - lo + 1));
        p += VarInt.Write(destination[p..], VarInt.ZigZag(offset + lo));
        ref byte output = ref MemoryMarshal.GetReference(destination);
        ulong cumulative = ranks.Cumulative;
        ulong threshold = ranks.Threshold;
        int j = lo;
        while (j <= hi)
        {
            int n = Math.Min(32, hi + 1 - j);
            if (n == 32)
            {
                // PERF: 32 counts below 128 are 32 one-byte varints, their own bytes; unless a pending
                // rank falls inside them, they are copied with one store.
                Vector256<byte> counts = Vector256.LoadUnsafe(ref bins, (nuint)j);
                if (counts.ExtractMostSignificantBits() == 0)
                {
                    ulong sum = threshold == ulong.MaxValue ? 0 : SumOf(counts);
                    if (threshold == ulong.MaxValue || cumulative + sum <= threshold)
                    {
                        counts.StoreUnsafe(ref output, (nuint)p);
                        p += 32;
                        cumulative += sum;
                        j += 32;
                        continue;
                    }
                }
            }

            for (int end = j + n; j < end; j++)
            {
                uint c = Unsafe.Add(ref bins, j);
                p += WriteSmall(destination, p, c);
                cumulative += c;
                if (cumulative > threshold)
                {
                    threshold = ranks.Answer(cumulative, RepresentativeOf(offset + j));
                }
            }
        }

        ranks.Cumulative = cumulative;
        return p;
    }

    /// <summary>A varint written inline at <paramref name="at"/>, into room the caller checked; returns where the next byte goes.</summary>
    /// <remarks>PERF: no call, so the loops that use it keep their state in registers.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int PutVarInt(ref byte output, int at, uint value)
    {
        while (value >= 0x80)
        {
            Unsafe.Add(ref output, at++) = (byte)(value | 0x80);
            value >>= 7;
        }

        Unsafe.Add(ref output, at++) = (byte)value;
        return at;
    }

    /// <summary>For each byte value, the positions (0–7) of its set bits, ascending, one a byte from the lowest.</summary>
    private static readonly ulong[] s_bytePositions = MakeBytePositions();

    private static ulong[] MakeBytePositions()
    {
        var table = new ulong[256];
        for (int b = 0; b < 256; b++)
        {
            int k = 0;
            for (int bit = 0; bit < 8; bit++)
            {
                if ((b & (1 << bit)) != 0)
                {
                    table[b] |= (ulong)bit << (8 * k++);
                }
            }
        }

        return table;
    }

    /// <summary>
    /// Writes <paramref name="start"/> plus the position of each set bit of <paramref name="bits"/> (a byte) at
    /// <paramref name="n"/> in <paramref name="positions"/>, which has room for eight there; returns the next free index.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int PutBytePositions(ref ushort positions, int n, ref ulong table, uint bits, int start)
    {
        Vector128<ushort> at = Vector128.WidenLower(Vector128.CreateScalarUnsafe(Unsafe.Add(ref table, bits)).AsByte())
            + Vector128.Create((ushort)start);
        at.StoreUnsafe(ref positions, (nuint)n);
        return n + BitOperations.PopCount(bits);
    }

    /// <summary>The sum of 32 byte counts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong SumOf(Vector256<byte> counts)
    {
        if (Avx2.IsSupported)
        {
            return Vector256.Sum(Avx2.SumAbsoluteDifferences(counts, Vector256<byte>.Zero).AsUInt64());
        }

        (Vector256<ushort> low, Vector256<ushort> high) = Vector256.Widen(counts);
        return Vector256.Sum(low + high);
    }
}
