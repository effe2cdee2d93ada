using System.Runtime.CompilerServices;

namespace Monitoring.Stream.Kafka.WireFormat;

/// <summary>
/// A hash table from byte keys to values for the decoder's caches: keys are looked up straight from a span (a
/// message's bytes) and copied, when added, into one array shared by all keys, so an entry is a hash, a place and a
/// value, and a lookup reads no key object and calls no comparer through an interface.
/// </summary>
/// <remarks>
/// Open addressing with linear probing, at most half full. Hashes come from <see cref="HashCode"/>, seeded randomly per
/// process, so a producer cannot aim collisions at the table (as with the <see cref="Dictionary{TKey, TValue}"/> it
/// replaces). Not thread-safe: one per decoder.
/// </remarks>
/// <typeparam name="TValue">The value stored with each key.</typeparam>
internal sealed class ByteKeyTable<TValue>
    where TValue : struct
{
    private byte[] _keys = new byte[4096];
    private int _keysUsed;
    private Entry[] _entries = new Entry[64];
    private int[] _buckets = new int[128];
    private int _count;

    /// <summary>Keys in the table.</summary>
    public int Count => _count;

    /// <summary>Finds the value stored with <paramref name="key"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryGetValue(ReadOnlySpan<byte> key, out TValue value)
    {
        int hash = Hash(key);
        int[] buckets = _buckets;
        int mask = buckets.Length - 1;
        Entry[] entries = _entries;
        for (int b = hash & mask; ; b = (b + 1) & mask)
        {
            int slot = buckets[b];
            if (slot == 0)
            {
                value = default;
                return false;
            }

            ref Entry entry = ref entries[slot - 1];
            if (entry.Hash == hash && key.SequenceEqual(_keys.AsSpan(entry.Start, entry.Length)))
            {
                value = entry.Value;
                return true;
            }
        }
    }

    /// <summary>Adds <paramref name="key"/>, which the table does not hold (the caller looked it up first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Add(ReadOnlySpan<byte> key, TValue value)
    {
        if (_count >= _buckets.Length / 2)
        {
            Rehash(_buckets.Length * 2);
        }

        if (_count == _entries.Length)
        {
            Array.Resize(ref _entries, _entries.Length * 2);
        }

        if (key.Length > _keys.Length - _keysUsed)
        {
            long needed = (long)_keysUsed + key.Length;
            if (needed > Array.MaxLength)
            {
                throw new InvalidOperationException("The decoder's key cache is full; its limits (MaxCachedStrings, MaxCachedSeries) bound it well below this.");
            }

            Array.Resize(ref _keys, (int)Math.Min(Array.MaxLength, Math.Max(needed, 2L * _keys.Length)));
        }

        int hash = Hash(key);
        key.CopyTo(_keys.AsSpan(_keysUsed));
        _entries[_count] = new Entry { Hash = hash, Start = _keysUsed, Length = key.Length, Value = value };
        _keysUsed += key.Length;
        _count++;
        Place(_buckets, hash, _count);
    }

    /// <summary>Forgets every key (the arrays keep their size).</summary>
    public void Clear()
    {
        Array.Clear(_buckets);
        _count = 0;
        _keysUsed = 0;
    }

    private static void Place(int[] buckets, int hash, int slot)
    {
        int mask = buckets.Length - 1;
        int b = hash & mask;
        while (buckets[b] != 0)
        {
            b = (b + 1) & mask;
        }

        buckets[b] = slot;
    }

    private void Rehash(int size)
    {
        var buckets = new int[size];
        for (int i = 0; i < _count; i++)
        {
            Place(buckets, _entries[i].Hash, i + 1);
        }

        _buckets = buckets;
    }

    private static int Hash(ReadOnlySpan<byte> key)
    {
        var hash = default(HashCode);
        hash.AddBytes(key);
        return hash.ToHashCode();
    }

    private struct Entry
    {
        public int Hash;
        public int Start;
        public int Length;
        public TValue Value;
    }
}
