using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Monitoring.Stream.Statistics;

/// <summary>
/// Dense bin counts of one sign of a <see cref="DdSketch"/>: a contiguous array of counters covering
/// bin indices <c>[_offset, _offset + _counts.Length)</c>, grown on demand and bounded by the
/// sketch's bin limit.
/// </summary>
/// <remarks>
/// When the occupied range would exceed the limit, bins are collapsed at one end: the positive
/// store folds its lowest bins into the lowest kept bin, the negative store folds its highest
/// bins (the largest magnitudes) into the highest kept bin. Either way the upper quantiles of the
/// whole distribution keep their accuracy. Folding is a clamp of the bin index, so the result does
/// not depend on the order in which values or partial sketches arrived.
/// </remarks>
[StructLayout(LayoutKind.Auto)]
internal struct DdSketchBinStore
{
    private const int InitialLength = 32;

    private uint[]? _counts;
    private int _offset;

    /// <summary>Values whose bin had already reached <see cref="uint.MaxValue"/>.</summary>
    public ulong SaturatedCount;

    public readonly bool IsAllocated => _counts is not null;

    /// <summary>Bins the array holds, occupied or not.</summary>
    public readonly int Capacity => _counts?.Length ?? 0;

    /// <summary>Bytes held by the counter array.</summary>
    public readonly int AllocatedBytes => _counts is null ? 0 : (_counts.Length * sizeof(uint)) + 24;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Increment(int index, int maxBins, bool collapseHighest)
    {
        uint[]? counts = _counts;
        int slot = index - _offset;
        // PERF: one unsigned compare covers both ends and the unallocated case (length 0 via null check).
        if (counts is not null && (uint)slot < (uint)counts.Length)
        {
            ref uint c = ref counts[slot];
            if (++c == 0)
            {
                c = uint.MaxValue;
                SaturatedCount++;
            }

            return;
        }

        AddSlow(index, 1, maxBins, collapseHighest);
    }

    /// <summary>Adds <paramref name="count"/> to the bin at <paramref name="index"/>.</summary>
    public void Add(int index, uint count, int maxBins, bool collapseHighest)
    {
        if (count == 0)
        {
            return;
        }

        uint[]? counts = _counts;
        int slot = index - _offset;
        if (counts is not null && (uint)slot < (uint)counts.Length)
        {
            AddSaturating(ref counts[slot], count);
            return;
        }

        AddSlow(index, count, maxBins, collapseHighest);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void AddSlow(int index, uint count, int maxBins, bool collapseHighest)
    {
        uint[]? counts = _counts;
        if (counts is not null && counts.Length == maxBins)
        {
            // PERF: the state after a collapse: the kept window fills the array and its kept end is
            // occupied, so a value beyond the collapsed end folds into the end bin in O(1), with no
            // scan and no allocation (1e-15 noise beside values around 1..1e6, say).
            if (!collapseHighest)
            {
                if (index < _offset && counts[^1] != 0)
                {
                    AddSaturating(ref counts[0], count);
                    return;
                }
            }
            else if (index - _offset >= counts.Length && counts[0] != 0)
            {
                AddSaturating(ref counts[^1], count);
                return;
            }
        }

        if (!TryGetOccupiedRange(out int occupiedLo, out int occupiedHi))
        {
            // An emptied store keeps its array: a window state reused for the next window
            // should not allocate again.
            counts = _counts ??= new uint[Math.Min(InitialLength, maxBins)];

            // Centre on the first value: data tends to spread both ways.
            _offset = index - (counts.Length / 2);
            counts[index - _offset] = count;
            return;
        }

        int lo = Math.Min(occupiedLo, index);
        int hi = Math.Max(occupiedHi, index);
        int windowLo = lo;
        int windowHi = hi;
        if ((long)hi - lo + 1 > maxBins)
        {
            if (collapseHighest)
            {
                windowHi = lo + maxBins - 1;
            }
            else
            {
                windowLo = hi - maxBins + 1;
            }
        }

        int needed = windowHi - windowLo + 1;
        if (needed <= counts!.Length)
        {
            CollapseInPlace(index, count, occupiedLo, occupiedHi, windowLo, windowHi);
            return;
        }

        // Grow by half of what is needed, not by doubling the array: data that widens a little at
        // one end and then the other would otherwise double it each time, and a latency sketch of
        // ~150 occupied bins would hold thousands. Most of the room goes to the side that grew.
        int newLength = Math.Min(maxBins, Math.Max(InitialLength, needed + (needed / 2)));
        var grown = new uint[newLength];
        int newOffset = PlaceWindow(index, windowLo, needed, newLength);
        for (int i = occupiedLo - _offset; i <= occupiedHi - _offset; i++)
        {
            if (counts[i] != 0)
            {
                int target = Math.Clamp(_offset + i, windowLo, windowHi);
                AddSaturating(ref grown[target - newOffset], counts[i]);
            }
        }

        AddSaturating(ref grown[Math.Clamp(index, windowLo, windowHi) - newOffset], count);
        _counts = grown;
        _offset = newOffset;
    }

    /// <summary>Where an array of <paramref name="length"/> bins starts so that it holds the kept window.</summary>
    private readonly int PlaceWindow(int index, int windowLo, int needed, int length)
    {
        int slack = length - needed;
        return index < _offset ? windowLo - (slack - (slack / 4)) : windowLo - (slack / 4);
    }

    /// <summary>
    /// Adds a value outside the array when the array is long enough for the kept window: folds the
    /// bins beyond the window into its collapsed end, moves the kept bins if the window is not
    /// inside the array, and allocates nothing.
    /// </summary>
    private void CollapseInPlace(int index, uint count, int occupiedLo, int occupiedHi, int windowLo, int windowHi)
    {
        uint[] counts = _counts!;

        // Bins beyond the window: below it on the positive side, above it on the negative side.
        int foldFrom = occupiedLo;
        int foldTo = Math.Min(occupiedHi, windowLo - 1);
        int keepLo = Math.Max(occupiedLo, windowLo);
        int keepHi = Math.Min(occupiedHi, windowHi);
        int foldInto = windowLo;
        if (windowHi < occupiedHi)
        {
            foldFrom = Math.Max(occupiedLo, windowHi + 1);
            foldTo = occupiedHi;
            foldInto = windowHi;
        }

        ulong folded = 0;
        if (foldFrom <= foldTo)
        {
            Span<uint> fold = counts.AsSpan(foldFrom - _offset, foldTo - foldFrom + 1);
            foreach (uint c in fold)
            {
                folded += c;
            }

            fold.Clear();
        }

        if (windowLo < _offset || windowHi - _offset >= counts.Length)
        {
            int newOffset = PlaceWindow(index, windowLo, windowHi - windowLo + 1, counts.Length);
            if (keepLo <= keepHi)
            {
                int length = keepHi - keepLo + 1;
                int from = keepLo - _offset;
                int to = keepLo - newOffset;
                // Overlapping ranges copy as if through a temporary (Span.CopyTo is a memmove).
                counts.AsSpan(from, length).CopyTo(counts.AsSpan(to, length));
                if (to > from)
                {
                    counts.AsSpan(from, Math.Min(length, to - from)).Clear();
                }
                else
                {
                    int clearFrom = Math.Max(from, to + length);
                    counts.AsSpan(clearFrom, from + length - clearFrom).Clear();
                }
            }

            _offset = newOffset;
        }

        AddSaturating(ref counts[foldInto - _offset], folded);
        AddSaturating(ref counts[Math.Clamp(index, windowLo, windowHi) - _offset], count);
    }

    /// <summary>
    /// Adds <paramref name="source"/>, the counts of bins <paramref name="firstIndex"/> onwards, when this
    /// store's array already covers all of them; returns false, changing nothing, when it does not.
    /// </summary>
    /// <remarks>
    /// PERF: what adding bin by bin would do when every bin falls inside the array (no growth, no fold),
    /// a vector at a time. A merge of window sketches into a query's sketch takes this path once the
    /// target has grown to the data's range: a window's few hundred mostly empty bins cost tens of vector
    /// adds instead of a call and a branch each.
    /// </remarks>
    public bool TryAddCovered(int firstIndex, ReadOnlySpan<uint> source)
    {
        uint[]? counts = _counts;
        long slot = (long)firstIndex - _offset;
        if (counts is null || slot < 0 || slot + source.Length > counts.Length)
        {
            return false;
        }

        Span<uint> target = counts.AsSpan((int)slot, source.Length);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= source.Length - Vector<uint>.Count; i += Vector<uint>.Count)
            {
                var a = new Vector<uint>(target[i..]);
                Vector<uint> sum = a + new Vector<uint>(source[i..]);
                if (Vector.LessThanAny(sum, a))
                {
                    // A bin would pass 2^32 - 1: the scalar loop below saturates and counts it.
                    break;
                }

                sum.CopyTo(target[i..]);
            }
        }

        for (; i < source.Length; i++)
        {
            AddSaturating(ref target[i], source[i]);
        }

        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AddSaturating(ref uint bin, uint count)
    {
        uint sum = bin + count;
        if (sum < bin)
        {
            SaturatedCount += sum + 1UL;
            sum = uint.MaxValue;
        }

        bin = sum;
    }

    /// <summary>Adds a sum of bin counts (from a fold) to a bin, saturating as adding them one by one would.</summary>
    private void AddSaturating(ref uint bin, ulong count)
    {
        ulong sum = bin + count;
        if (sum > uint.MaxValue)
        {
            SaturatedCount += sum - uint.MaxValue;
            sum = uint.MaxValue;
        }

        bin = (uint)sum;
    }

    /// <summary>Hints the processor to fetch the first <paramref name="lines"/> cache lines of the counts.</summary>
    public readonly void Prefetch(int lines) => Monitoring.Stream.Prefetch.Array(_counts, lines);

    /// <summary>Finds the lowest and highest bin index with a non-zero count.</summary>
    public readonly bool TryGetOccupiedRange(out int lo, out int hi)
    {
        lo = hi = 0;
        uint[]? counts = _counts;
        if (counts is null)
        {
            return false;
        }

        int first = counts.AsSpan().IndexOfAnyExcept(0u);
        if (first < 0)
        {
            return false;
        }

        int last = counts.AsSpan().LastIndexOfAnyExcept(0u);
        lo = _offset + first;
        hi = _offset + last;
        return true;
    }

    /// <summary>The count of the bin at <paramref name="index"/> (zero outside the array).</summary>
    public readonly uint CountAt(int index)
    {
        uint[]? counts = _counts;
        int slot = index - _offset;
        return counts is not null && (uint)slot < (uint)counts.Length ? counts[slot] : 0;
    }

    /// <summary>The counts of the occupied range, lowest index first, with that range's first index.</summary>
    public readonly ReadOnlySpan<uint> OccupiedCounts(out int firstIndex)
    {
        if (!TryGetOccupiedRange(out int lo, out int hi))
        {
            firstIndex = 0;
            return [];
        }

        firstIndex = lo;
        return _counts.AsSpan(lo - _offset, hi - lo + 1);
    }

    /// <summary>
    /// Gives an unallocated store an array of exactly <paramref name="length"/> bins starting at
    /// <paramref name="firstIndex"/>, for a reader to fill: one allocation, sized by what was read.
    /// </summary>
    public Span<uint> Allocate(int firstIndex, int length)
    {
        Debug.Assert(_counts is null && length > 0, "A reader allocates each store once.");
        _counts = new uint[length];
        _offset = firstIndex;
        return _counts;
    }

    /// <summary>Zeroes every bin, keeping the array for reuse.</summary>
    public void Clear()
    {
        if (_counts is not null)
        {
            Array.Clear(_counts);
        }

        SaturatedCount = 0;
    }
}
