using Monitoring.Stream.Model;
using Monitoring.Stream.Server.Service;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>The point count that ingest admission reads from a MessagePack body before decoding it.</summary>
public class MessagePackPointCountTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(70_000)]
    public void Read_WireFormatBatch_ReturnsItsPoints(int points)
    {
        byte[] body = ServiceApi.MessagePack("count_me", [new Label("route", "/a"), new Label("method", "GET")], Enumerable.Range(0, points).Select(i => (double)i), 1_800_000_000_000);
        Assert.Equal(points, MessagePackPointCount.Read(body));
    }

    [Theory]
    [InlineData(new byte[] { 0x95, 0x01, 0x00 })] // truncated after the version
    [InlineData(new byte[] { 0x95, 0x01, 0x00, 0x91, 0x91, 0x90, 0x90 })] // a string table holding an array
    [InlineData(new byte[] { 0x93, 0x01, 0x00, 0x90 })] // three elements, not five
    [InlineData(new byte[] { 0x81, 0x01, 0x02 })] // a map
    [InlineData(new byte[] { 0x95, 0x01, 0x00, 0x90, 0x90, 0xdd, 0x7f, 0xff, 0xff, 0xff })] // points claiming more than the bytes left
    public void Read_NotTheWireFormat_ReturnsNull(byte[] body) => Assert.Null(MessagePackPointCount.Read(body));
}
