namespace Monitoring.Stream.Store;

/// <summary>
/// A write-only stream that counts the bytes written to it and keeps only those written after
/// <see cref="Capture"/> is set: an Arrow file writer run over it computes a file's layout and, at the
/// end, its footer, without holding or writing the file's body again.
/// </summary>
internal sealed class FooterProbeStream : System.IO.Stream
{
    private readonly MemoryStream _captured = new();
    private long _position;

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
