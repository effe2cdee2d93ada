using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Monitoring.Stream.Statistics;

/// <summary>
/// Dense bin counts of one sign of a <see cref="DdSketch"/>: a contiguous array of counters covering
/// bin indices <c>[_offset, _offset + Capacity)</c>, grown on demand and bounded by the sketch's bin
/// limit. Counters are one byte wide until a bin needs more, then two, then four.
/// </summary>
/// <remarks>
/// <para>When the occupied range would exceed the limit, bins are collapsed at one end: the positive
/// store folds its lowest bins into the lowest kept bin, the negative store folds its highest
/// bins (the largest magnitudes) into the highest kept bin. Either way the upper quantiles of the
/// whole distribution keep their accuracy. Folding is a clamp of the bin index, so the result does
/// not depend on the order in which values or partial sketches arrived.</para>
/// <para>MEMORY: a window's sketch rarely counts more than 255 values in one bin (a latency series of a
/// few hundred points a window holds a handful per bin), so counters start at one byte and the store
/// widens its one array to 16, then 32 bits when a bin would pass the narrower maximum. Counts are
/// exact at every width; only 32-bit counters saturate (<see cref="SaturatedCount"/>). Widening is
/// the only allocation besides growth, and a cleared store keeps its width and array, so a reused
/// sketch allocates nothing per value in steady state.</para>
/// </remarks>
[StructLayout(LayoutKind.Auto)]
internal struct DdSketchBinStore
{
    private const int InitialLength = 32;

    /// <summary>The counters, <c>1 &lt;&lt; _shift</c> bytes each.</summary>
    private byte[]? _bins;
    private int _offset;
    private int _shift;

    /// <summary>Values whose bin had already reached <see cref="uint.MaxValue"/>.</summary>
    public ulong SaturatedCount;

    public readonly bool IsAllocated => _bins is not null;

    /// <summary>Log2 of the bytes per counter: 0 (byte), 1 (ushort) or 2 (uint).</summary>
    public readonly int CounterShift => _shift;

    /// <summary>Bins the array holds, occupied or not.</summary>
    public readonly int Capacity => _bins is null ? 0 : _bins.Length >> _shift;

    /// <summary>Bytes held by the counter array.</summary>
    public readonly int AllocatedBytes => _bins is null ? 0 : _bins.Length + 24;

    /// <summary>
    /// Counts one value in bin <paramref name="index"/> where that is an increment in place: the bin inside the
    /// array and its counter below the largest its width holds, or a four-byte counter, which saturates there
    /// (<see cref="SaturatedCount"/>). Otherwise changes nothing and returns false: the value needs
    /// <see cref="Increment"/>'s slow path (widening, growth, collapse).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryIncrementInPlace(int index)
    {
        byte[]? bins = _bins;
        int slot = index - _offset;
        int shift = _shift;
        // PERF: one unsigned compare covers both ends; the width test is predictable (one width per sketch).
        if (bins is null || (uint)slot >= (uint)(bins.Length >> shift))
        {
            return false;
        }

        ref byte start = ref MemoryMarshal.GetArrayDataReference(bins);
        if (shift == 0)
        {
            ref byte b = ref Unsafe.Add(ref start, slot);
            if (b == byte.MaxValue)
            {
                return false;
            }

            b++;
            return true;
        }

        if (shift == 1)
        {
            ref ushort u = ref Unsafe.Add(ref Unsafe.As<byte, ushort>(ref start), slot);
            if (u == ushort.MaxValue)
            {
                return false;
            }

            u++;
            return true;
        }

        ref uint c = ref Unsafe.Add(ref Unsafe.As<byte, uint>(ref start), slot);
        if (++c == 0)
        {
            c = uint.MaxValue;
            SaturatedCount++;
        }

        return true;
    }

    /// <summary>Counts one value in bin <paramref name="index"/>: in place where it can, else widening, growing or collapsing the store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Increment(int index, int maxBins, bool collapseHighest)
    {
        if (!TryIncrementInPlace(index))
        {
            AddSlow(index, 1, maxBins, collapseHighest);
        }
    }

    /// <summary>Adds <paramref name="count"/> to the bin at <paramref name="index"/>.</summary>
    public void Add(int index, uint count, int maxBins, bool collapseHighest)
    {
        if (count == 0)
        {
            return;
        }

        byte[]? bins = _bins;
        int slot = index - _offset;
        if (bins is not null && (uint)slot < (uint)(bins.Length >> _shift))
        {
            if (_shift == 2)
            {
                AddTo(ref Counts<uint>()[slot], count);
                return;
            }

            ulong sum = CountAtSlot(slot) + (ulong)count;
            if (sum <= MaxOf(_shift))
            {
                SetSlot(slot, (uint)sum);
                return;
            }
        }

        AddSlow(index, count, maxBins, collapseHighest);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void AddSlow(int index, uint count, int maxBins, bool collapseHighest)
    {
        switch (_shift)
        {
            case 0:
                AddSlow<byte>(index, count, maxBins, collapseHighest);
                break;
            case 1:
                AddSlow<ushort>(index, count, maxBins, collapseHighest);
                break;
            default:
                AddSlow<uint>(index, count, maxBins, collapseHighest);
                break;
        }
    }

    /// <summary>
    /// Everything but an in-range add that fits: widening, the first value, growth and collapse. Each
    /// case first works out the largest count it will store and widens the counters (then starts over
    /// at the new width) before it changes anything, so no count is ever truncated.
    /// </summary>
    private void AddSlow<T>(int index, uint count, int maxBins, bool collapseHighest)
        where T : unmanaged, IBinaryInteger<T>, IMinMaxValue<T>
    {
        Span<T> counts = Counts<T>();
        int slot = index - _offset;
        if (_bins is not null && (uint)slot < (uint)counts.Length)
        {
            // In range: only a narrow counter that would pass its maximum comes here.
            WidenAndAdd(ulong.CreateTruncating(counts[slot]) + count, index, count, maxBins, collapseHighest);
            return;
        }

        if (_bins is not null && counts.Length == maxBins)
        {
            // PERF: the state after a collapse: the kept window fills the array and its kept end is
            // occupied, so a value beyond the collapsed end folds into the end bin in O(1), with no
            // scan and no allocation (1e-15 noise beside values around 1..1e6, say).
            if (!collapseHighest)
            {
                if (index < _offset && counts[^1] != T.Zero)
                {
                    if (!Fits<T>(ulong.CreateTruncating(counts[0]) + count))
                    {
                        WidenAndAdd(ulong.CreateTruncating(counts[0]) + count, index, count, maxBins, collapseHighest);
                        return;
                    }

                    AddTo(ref counts[0], count);
                    return;
                }
            }
            else if (index - _offset >= counts.Length && counts[0] != T.Zero)
            {
                if (!Fits<T>(ulong.CreateTruncating(counts[^1]) + count))
                {
                    WidenAndAdd(ulong.CreateTruncating(counts[^1]) + count, index, count, maxBins, collapseHighest);
                    return;
                }

                AddTo(ref counts[^1], count);
                return;
            }
        }

        if (!TryGetOccupiedRange(counts, out int occupiedLo, out int occupiedHi))
        {
            if (!Fits<T>(count))
            {
                WidenAndAdd(count, index, count, maxBins, collapseHighest);
                return;
            }

            // An emptied store keeps its array: a window state reused for the next window
            // should not allocate again.
            if (_bins is null)
            {
                _bins = new byte[Math.Min(InitialLength, maxBins) << _shift];
                counts = Counts<T>();
            }

            // Centre on the first value: data tends to spread both ways.
            _offset = index - (counts.Length / 2);
            counts[index - _offset] = T.CreateTruncating(count);
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

        // The largest count this add can store: the collapsed end receives the bins beyond the
        // window (and the value, when it lands there too); the value's own bin receives the value.
        int foldInto = windowHi < occupiedHi ? windowHi : windowLo;
        int clamped = Math.Clamp(index, windowLo, windowHi);
        ulong folded = FoldedSum(counts, occupiedLo, occupiedHi, windowLo, windowHi);
        ulong atFold = CountAt(foldInto) + folded + (clamped == foldInto ? count : 0UL);
        ulong atValue = CountAt(clamped) + count;
        if (!Fits<T>(Math.Max(atFold, atValue)))
        {
            WidenAndAdd(Math.Max(atFold, atValue), index, count, maxBins, collapseHighest);
            return;
        }

        int needed = windowHi - windowLo + 1;
        if (needed <= counts.Length)
        {
            CollapseInPlace(counts, index, count, occupiedLo, occupiedHi, windowLo, windowHi);
            return;
        }

        // Grow by half of what is needed, not by doubling the array: data that widens a little at
        // one end and then the other would otherwise double it each time, and a latency sketch of
        // ~150 occupied bins would hold thousands. Most of the room goes to the side that grew.
        int newLength = Math.Min(maxBins, Math.Max(InitialLength, needed + (needed / 2)));
        var grownBytes = new byte[newLength << _shift];
        Span<T> grown = MemoryMarshal.Cast<byte, T>(grownBytes.AsSpan());
        int newOffset = PlaceWindow(index, windowLo, needed, newLength);
        for (int i = occupiedLo - _offset; i <= occupiedHi - _offset; i++)
        {
            if (counts[i] != T.Zero)
            {
                int target = Math.Clamp(_offset + i, windowLo, windowHi);
                AddTo(ref grown[target - newOffset], ulong.CreateTruncating(counts[i]));
            }
        }

        AddTo(ref grown[clamped - newOffset], count);
        _bins = grownBytes;
        _offset = newOffset;
    }

    /// <summary>Widens the counters so that <paramref name="largest"/> fits (or to 32 bits), then adds again.</summary>
    private void WidenAndAdd(ulong largest, int index, uint count, int maxBins, bool collapseHighest)
    {
        Debug.Assert(_shift < 2, "32-bit counters saturate instead of widening.");
        Widen(ShiftFor(largest));
        Add(index, count, maxBins, collapseHighest);
    }

    /// <summary>The narrowest counter width (as a shift) that holds <paramref name="value"/>; 2 beyond 16 bits.</summary>
    private static int ShiftFor(ulong value) => value <= byte.MaxValue ? 0 : value <= ushort.MaxValue ? 1 : 2;

    private static ulong MaxOf(int shift) => shift == 0 ? byte.MaxValue : shift == 1 ? ushort.MaxValue : uint.MaxValue;

    /// <summary>Whether <paramref name="value"/> fits a counter of type <typeparamref name="T"/>; 32-bit counters take anything and saturate.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Fits<T>(ulong value)
        where T : unmanaged, IBinaryInteger<T>, IMinMaxValue<T>
        => typeof(T) == typeof(uint) || value <= ulong.CreateTruncating(T.MaxValue);

    /// <summary>Rewrites the counters at a wider width (shift <paramref name="shift"/>); one allocation, the same bins.</summary>
    public void Widen(int shift)
    {
        if (shift <= _shift)
        {
            return;
        }

        if (_bins is null)
        {
            _shift = shift;
            return;
        }

        int capacity = Capacity;
        var wider = new byte[capacity << shift];
        for (int i = 0; i < capacity; i++)
        {
            uint c = CountAtSlot(i);
            if (shift == 1)
            {
                Unsafe.WriteUnaligned(ref wider[i * 2], (ushort)c);
            }
            else
            {
                Unsafe.WriteUnaligned(ref wider[i * 4], c);
            }
        }

        _bins = wider;
        _shift = shift;
    }

    private readonly ulong FoldedSum<T>(Span<T> counts, int occupiedLo, int occupiedHi, int windowLo, int windowHi)
        where T : unmanaged, IBinaryInteger<T>, IMinMaxValue<T>
    {
        int foldFrom = occupiedLo;
        int foldTo = Math.Min(occupiedHi, windowLo - 1);
        if (windowHi < occupiedHi)
        {
            foldFrom = Math.Max(occupiedLo, windowHi + 1);
            foldTo = occupiedHi;
        }

        ulong folded = 0;
        for (int i = foldFrom; i <= foldTo; i++)
        {
            folded += ulong.CreateTruncating(counts[i - _offset]);
        }

        return folded;
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
    /// inside the array, and allocates nothing. The caller checked that the counts fit.
    /// </summary>
    private void CollapseInPlace<T>(Span<T> counts, int index, uint count, int occupiedLo, int occupiedHi, int windowLo, int windowHi)
        where T : unmanaged, IBinaryInteger<T>, IMinMaxValue<T>
    {
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
            Span<T> fold = counts.Slice(foldFrom - _offset, foldTo - foldFrom + 1);
            foreach (T c in fold)
            {
                folded += ulong.CreateTruncating(c);
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
                counts.Slice(from, length).CopyTo(counts.Slice(to, length));
                if (to > from)
                {
                    counts.Slice(from, Math.Min(length, to - from)).Clear();
                }
                else
                {
                    int clearFrom = Math.Max(from, to + length);
                    counts.Slice(clearFrom, from + length - clearFrom).Clear();
                }
            }

            _offset = newOffset;
        }

        AddTo(ref counts[foldInto - _offset], folded);
        AddTo(ref counts[Math.Clamp(index, windowLo, windowHi) - _offset], count);
    }

    /// <summary>
    /// Adds <paramref name="source"/>, the counts of bins <paramref name="firstIndex"/> onwards, when this
    /// store's array already covers all of them; returns false, changing nothing, when it does not.
    /// </summary>
    /// <remarks>
    /// PERF: what adding bin by bin would do when every bin falls inside the array (no growth, no fold),
    /// a vector at a time. A merge of window sketches into a query's sketch takes this path once the
    /// target has grown to the data's range: a window's few hundred mostly empty bins cost tens of vector
    /// adds instead of a call and a branch each. A target that takes merges accumulates large counts, so
    /// it is widened to 32-bit counters here once rather than step by step.
    /// </remarks>
    public bool TryAddCovered<TSource>(int firstIndex, ReadOnlySpan<TSource> source)
        where TSource : unmanaged, IBinaryInteger<TSource>, IMinMaxValue<TSource>
    {
        long slot = (long)firstIndex - _offset;
        if (_bins is null || slot < 0 || slot + source.Length > Capacity)
        {
            return false;
        }

        Widen(2);
        Span<uint> target = Counts<uint>().Slice((int)slot, source.Length);
        int i = 0;
        if (typeof(TSource) == typeof(uint) && Vector128.IsHardwareAccelerated)
        {
            ReadOnlySpan<uint> wide = MemoryMarshal.Cast<TSource, uint>(source);
            for (; i <= wide.Length - Vector128<uint>.Count; i += Vector128<uint>.Count)
            {
                var a = Vector128.Create<uint>(target[i..]);
                Vector128<uint> sum = a + Vector128.Create<uint>(wide[i..]);
                if (Vector128.LessThanAny(sum, a))
                {
                    // A bin would pass 2^32 - 1: the scalar loop below saturates and counts it.
                    break;
                }

                sum.CopyTo(target[i..]);
            }
        }
        else if (typeof(TSource) == typeof(byte) && Vector128.IsHardwareAccelerated)
        {
            // Sixteen byte counters widen into four vectors of 32-bit counters.
            ReadOnlySpan<byte> narrow = MemoryMarshal.Cast<TSource, byte>(source);
            for (; i <= narrow.Length - 16; i += 16)
            {
                (Vector128<ushort> low, Vector128<ushort> high) = Vector128.Widen(Vector128.Create<byte>(narrow[i..]));
                (Vector128<uint> c0, Vector128<uint> c1) = Vector128.Widen(low);
                (Vector128<uint> c2, Vector128<uint> c3) = Vector128.Widen(high);
                var a0 = Vector128.Create<uint>(target[i..]);
                var a1 = Vector128.Create<uint>(target[(i + 4)..]);
                var a2 = Vector128.Create<uint>(target[(i + 8)..]);
                var a3 = Vector128.Create<uint>(target[(i + 12)..]);
                Vector128<uint> s0 = a0 + c0, s1 = a1 + c1, s2 = a2 + c2, s3 = a3 + c3;
                if (Vector128.LessThanAny(s0, a0) || Vector128.LessThanAny(s1, a1) || Vector128.LessThanAny(s2, a2) || Vector128.LessThanAny(s3, a3))
                {
                    break;
                }

                s0.CopyTo(target[i..]);
                s1.CopyTo(target[(i + 4)..]);
                s2.CopyTo(target[(i + 8)..]);
                s3.CopyTo(target[(i + 12)..]);
            }
        }

        for (; i < source.Length; i++)
        {
            uint c = uint.CreateTruncating(source[i]);
            if (c != 0)
            {
                AddTo(ref target[i], c);
            }
        }

        return true;
    }

    /// <summary>Adds to a counter, saturating at the width's maximum (only reached at 32 bits: narrower counters widen first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AddTo<T>(ref T bin, ulong count)
        where T : unmanaged, IBinaryInteger<T>, IMinMaxValue<T>
    {
        ulong max = ulong.CreateTruncating(T.MaxValue);
        ulong sum = ulong.CreateTruncating(bin) + count;
        if (sum > max)
        {
            Debug.Assert(typeof(T) == typeof(uint), "Narrow counters widen before they could overflow.");
            SaturatedCount += sum - max;
            sum = max;
        }

        bin = T.CreateTruncating(sum);
    }

    /// <summary>The counters as a span of their width; the caller matches <typeparamref name="T"/> to <see cref="CounterShift"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly Span<T> Counts<T>()
        where T : unmanaged
    {
        Debug.Assert(_bins is null || Unsafe.SizeOf<T>() == 1 << _shift, "Counter type matches the width.");
        return MemoryMarshal.Cast<byte, T>(_bins.AsSpan());
    }

    private readonly uint CountAtSlot(int slot)
    {
        ref byte start = ref MemoryMarshal.GetArrayDataReference(_bins!);
        return _shift switch
        {
            0 => Unsafe.Add(ref start, slot),
            1 => Unsafe.Add(ref Unsafe.As<byte, ushort>(ref start), slot),
            _ => Unsafe.Add(ref Unsafe.As<byte, uint>(ref start), slot),
        };
    }

    private readonly void SetSlot(int slot, uint value)
    {
        ref byte start = ref MemoryMarshal.GetArrayDataReference(_bins!);
        switch (_shift)
        {
            case 0:
                Unsafe.Add(ref start, slot) = (byte)value;
                break;
            case 1:
                Unsafe.Add(ref Unsafe.As<byte, ushort>(ref start), slot) = (ushort)value;
                break;
            default:
                Unsafe.Add(ref Unsafe.As<byte, uint>(ref start), slot) = value;
                break;
        }
    }

    /// <summary>Hints the processor to fetch the counter of bin <paramref name="index"/>; never reads the counter array.</summary>
    /// <remarks>
    /// PERF: no bounds check. Reading the array's length waits for the array's first line, and a sketch's
    /// counters mostly fit in a line or two: that wait was the very fetch this hint is for, the costliest
    /// load of a shard's loop. An index outside the array hints an address outside it, which is harmless (a
    /// prefetch never faults); the address is a raw pointer from the start of the array's data, never a
    /// managed reference outside the object.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly unsafe void PrefetchBin(int index)
    {
        byte[]? bins = _bins;
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported && bins is not null)
        {
            byte* start = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(bins));
            System.Runtime.Intrinsics.X86.Sse.Prefetch0(start + ((nint)(index - _offset) << _shift));
        }
    }

    /// <summary>Hints the processor to fetch the first <paramref name="lines"/> cache lines of the counts.</summary>
    /// <remarks>The array's length is not read (<see cref="Monitoring.Stream.Prefetch.Lines"/>): lines past its end are requested too.</remarks>
    public readonly void Prefetch(int lines) => Monitoring.Stream.Prefetch.Lines(_bins, lines);

    /// <summary>Finds the lowest and highest bin index with a non-zero count.</summary>
    public readonly bool TryGetOccupiedRange(out int lo, out int hi) => _shift switch
    {
        0 => TryGetOccupiedRange(Counts<byte>(), out lo, out hi),
        1 => TryGetOccupiedRange(Counts<ushort>(), out lo, out hi),
        _ => TryGetOccupiedRange(Counts<uint>(), out lo, out hi),
    };

    private readonly bool TryGetOccupiedRange<T>(Span<T> counts, out int lo, out int hi)
        where T : unmanaged, IBinaryInteger<T>, IMinMaxValue<T>
    {
        lo = hi = 0;
        int first = counts.IndexOfAnyExcept(T.Zero);
        if (first < 0)
        {
            return false;
        }

        int last = counts.LastIndexOfAnyExcept(T.Zero);
        lo = _offset + first;
        hi = _offset + last;
        return true;
    }

    /// <summary>The count of the bin at <paramref name="index"/> (zero outside the array).</summary>
    public readonly uint CountAt(int index)
    {
        int slot = index - _offset;
        return _bins is not null && (uint)slot < (uint)Capacity ? CountAtSlot(slot) : 0;
    }

    /// <summary>The counts of the occupied range, lowest index first, as counters of the store's width (<see cref="CounterShift"/>), with that range's first index.</summary>
    public readonly ReadOnlySpan<T> OccupiedCounts<T>(out int firstIndex)
        where T : unmanaged, IBinaryInteger<T>, IMinMaxValue<T>
    {
        Span<T> counts = Counts<T>();
        if (!TryGetOccupiedRange(counts, out int lo, out int hi))
        {
            firstIndex = 0;
            return [];
        }

        firstIndex = lo;
        return counts.Slice(lo - _offset, hi - lo + 1);
    }

    /// <summary>The occupied range as raw counters of the store's width, with its first index.</summary>
    public readonly Occupied GetOccupied()
    {
        if (!TryGetOccupiedRange(out int lo, out int hi))
        {
            return new Occupied([], _shift, 0);
        }

        return new Occupied(_bins.AsSpan((lo - _offset) << _shift, (hi - lo + 1) << _shift), _shift, lo);
    }

    /// <summary>The whole counter array and the bin index of its first counter, when the counters are one byte wide (the window summary's fast path reads them directly).</summary>
    public readonly bool TryGetByteCounters([NotNullWhen(true)] out byte[]? bins, out int offset)
    {
        bins = _shift == 0 ? _bins : null;
        offset = _offset;
        return bins is not null;
    }

    /// <summary>The number of bins in the occupied range.</summary>
    public readonly int OccupiedLength => TryGetOccupiedRange(out int lo, out int hi) ? hi - lo + 1 : 0;

    /// <summary>
    /// Gives an unallocated store an array of exactly <paramref name="length"/> bins starting at
    /// <paramref name="firstIndex"/>, with counters just wide enough for <paramref name="largest"/>, for a
    /// reader to fill with <see cref="SetCount"/>: one allocation, sized by what was read.
    /// </summary>
    public void Allocate(int firstIndex, int length, ulong largest)
    {
        Debug.Assert(_bins is null && length > 0, "A reader allocates each store once.");
        _shift = ShiftFor(largest);
        _bins = new byte[length << _shift];
        _offset = firstIndex;
    }

    /// <summary>Sets the count of the <paramref name="slot"/>-th bin of an array given by <see cref="Allocate"/>; the count fits its width.</summary>
    public readonly void SetCount(int slot, uint count)
    {
        Debug.Assert((uint)slot < (uint)Capacity && count <= MaxOf(_shift), "The reader sized the array and its counters.");
        SetSlot(slot, count);
    }

    /// <summary>The occupied counters of a store: read them as <c>byte</c>, <c>ushort</c> or <c>uint</c> by <see cref="Shift"/>.</summary>
    internal readonly ref struct Occupied
    {
        private readonly ReadOnlySpan<byte> _raw;

        public Occupied(ReadOnlySpan<byte> raw, int shift, int first)
        {
            _raw = raw;
            Shift = shift;
            First = first;
        }

        /// <summary>Log2 of the bytes per counter.</summary>
        public int Shift { get; }

        /// <summary>The bin index of the first counter.</summary>
        public int First { get; }

        /// <summary>The number of bins.</summary>
        public int Length => _raw.Length >> Shift;

        /// <summary>The counters as <typeparamref name="T"/>, which must match <see cref="Shift"/>.</summary>
        public ReadOnlySpan<T> As<T>()
            where T : unmanaged
        {
            Debug.Assert(Unsafe.SizeOf<T>() == 1 << Shift, "Counter type matches the width.");
            return MemoryMarshal.Cast<byte, T>(_raw);
        }

        /// <summary>The number of bins with a non-zero count.</summary>
        public int CountOccupied() => Shift switch
        {
            0 => Length - _raw.Count((byte)0),
            1 => Length - As<ushort>().Count((ushort)0),
            _ => Length - As<uint>().Count(0u),
        };
    }

    /// <summary>Zeroes every bin, keeping the array and its counter width for reuse.</summary>
    public void Clear()
    {
        if (_bins is not null)
        {
            Array.Clear(_bins);
        }

        SaturatedCount = 0;
    }
}
