namespace Monitoring.Stream.Store;

/// <summary>
/// A write-only stream that compares the bytes written to it with an existing file and keeps only
/// those written after <see cref="Capture"/> is set: an Arrow file writer run over it proves that it
/// re-creates the file byte for byte and, at the end, gives the footer for it, without holding or
/// writing the file's body again.
/// </summary>
internal sealed class FooterProbeStream : System.IO.Stream
{
    private readonly MemoryStream _captured = new();
    private readonly System.IO.Stream _original;
    private byte[] _compare = new byte[1 << 16];
    private long _position;

    /// <param name="original">The file to compare with, read from its start.</param>
    public FooterProbeStream(System.IO.Stream original) => _original = original;

    /// <summary>Whether a byte written before <see cref="Capture"/> was set differs from the file (or ran past its end).</summary>
    public bool Differs { get; private set; }

    /// <summary>Whether bytes written from now on are kept.</summary>
    public bool Capture { get; set; }

    /// <summary>The bytes written since <see cref="Capture"/> was set.</summary>
    public ReadOnlySpan<byte> Captured => _captured.GetBuffer().AsSpan(0, (int)_captured.Length);

    public override bool CanRead => false;

    /// <summary>True because the Arrow file writer requires it; the stream only ever stays where it is.</summary>
    public override bool CanSeek => true;

    public override bool CanWrite => true;

    public override long Length => _position;

    public override long Position
    {
        get => _position;
        set => Seek(value, SeekOrigin.Begin);
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (Capture)
        {
            _captured.Write(buffer);
        }
        else if (!Differs)
        {
            if (_compare.Length < buffer.Length)
            {
                _compare = new byte[buffer.Length];
            }

            Span<byte> original = _compare.AsSpan(0, buffer.Length);
            Differs = _original.ReadAtLeast(original, buffer.Length, throwOnEndOfStream: false) < buffer.Length || !original.SequenceEqual(buffer);
        }

        _position += buffer.Length;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        Write(buffer.AsSpan(offset, count));
        return Task.CompletedTask;
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin)
    {
        long target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => _position + offset,
        };

        // The Arrow file writer only appends: a real move would mean the layout is not what this probe assumes.
        return target == _position ? _position : throw new NotSupportedException("The footer probe only appends.");
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _captured.Dispose();
        }

        base.Dispose(disposing);
    }
}
