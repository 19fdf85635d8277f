import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import { WebSocket, type RawData } from 'ws';
import { CLOSE, HELLO_TYPE, decodeControl, encodeControl, type ControlMessage } from '../wire';
import { PeerExtensions, peerExtensions } from './peer-extensions';
import { WebSocketSink, WS_HIGH_WATER_BYTES, closeStreamSocket } from './ws-sink';
import { WS_PING_INTERVAL_MS, heartbeat } from './ws-heartbeat';
import { receivePieces } from './ws-pieces';
import type { SharedBufferReads } from './ws-send-frames';

/** How long a local peer may keep its side open after we sent our FIN, before it is cut. */
export const LINGER_MS = 30_000;

export interface TunnelOptions {
  /**
   * Half-close (default on): a FIN from the local side is sent as an `eof` control message and the
   * other direction keeps flowing, as TCP does; the stream closes once both sides have ended. Off
   * for a PTY, whose end is the end of the session. Only with a peer that announced `eof`: with a
   * plain (IoT Hub SDK) peer a local end is a normal close, the way IoT Hub ends streams.
   */
  halfClose?: boolean;
  /** What the peer understands (default: as negotiated when `ws` was dialed with `dialStream`). */
  peer?: PeerExtensions;
  /** Control messages other than `eof`, already parsed; `null` for a malformed text frame. */
  onControl?: (msg: ({ type: string } & Record<string, unknown>) | null, raw: string) => void;
  /** When the local side ends: a last control message before the normal close (exit status), if the peer announced it. */
  finalControl?: () => ControlMessage | undefined;
  /** Any byte in either direction (for idle timeouts). */
  onActivity?: () => void;
  highWaterBytes?: number;
  /** WebSocket ping interval; a peer silent for two intervals is cut (half-open TCP). */
  pingIntervalMs?: number;
  /**
   * The local socket was connected with these reads' `onread` (and paused): its bytes arrive here, not
   * as 'data', and go out as frames written past `ws`'s Sender (core/ws-send-frames.ts).
   */
  localReads?: SharedBufferReads;
}

export interface TunnelResult {
  /** Bytes read from the local side and sent into the WebSocket. */
  bytesOut: number;
  /** Bytes received from the WebSocket and written to the local side. */
  bytesIn: number;
  /** WebSocket close code and reason as the tunnel ended (1006: the connection was lost). */
  closeCode: number;
  closeReason: string;
  endedBy: 'local' | 'remote';
  /**
   * Both ends ended the stream (close 1000 after the ends were exchanged, no error): the local side
   * got a FIN. Anything else (shutdown 1001, lost peer, limit, error) reset it and is a failure.
   */
  clean: boolean;
  error?: Error;
}

export interface Tunnel {
  done: Promise<TunnelResult>;
  /** What the other side understands; control messages of other types are never sent to it. */
  peer: PeerExtensions;
  /**
   * Sends a control message once the peer is known, and only if it announced the message's type
   * (otherwise it is dropped). Queued behind the data already written.
   */
  sendControl(msg: ControlMessage): void;
  /**
   * Ends the stream from our side with a code and a reason the other side can show. Any code but
   * 1000 also resets the local side at once: it must not wait for the peer to learn the stream failed.
   */
  close(code: number, reason: string): void;
}

/** Resets a local byte stream: RST for a TCP socket (never a FIN that reads as a clean end), destroy otherwise. */
export function resetLocal(local: Duplex): void {
  if (local instanceof Socket) {
    if (!local.destroyed) local.resetAndDestroy();
  } else {
    local.destroy();
  }
}

type Callback = () => void;

/**
 * Joins a local byte stream (TCP socket, PTY) and a streaming WebSocket: two pumps with
 * backpressure, one close path. A local end becomes a normal close (1000) once everything read has
 * been sent; a normal remote close (1000) becomes a FIN after everything received has been written.
 * Every other end (1001 shutdown, lost peer, limit, error, a local side closed without its end)
 * resets the local side, so its peer does not mistake a cut stream for a finished one.
 *
 * The WebSocket must be open; pause it (`ws.pause()`) until the tunnel takes it so no frame is lost.
 * Local sockets should be `allowHalfOpen` so their ends are driven from here.
 */
export function startTunnel(local: Duplex, ws: WebSocket, opts: TunnelOptions = {}): Tunnel {
  const sink = new WebSocketSink(ws, opts.highWaterBytes ?? WS_HIGH_WATER_BYTES);
  let bytesOut = 0;
  let bytesIn = 0;
  let endedBy: 'local' | 'remote' | undefined;
  let error: Error | undefined;
  let closeCode = 1006;
  let closeText = '';
  let wsClosed = false;
  let localClosed = false;
  let localEnded = false;
  let wsWaitsForLocalDrain = false;
  let sentEof = false;
  let receivedEof = false;
  const halfClose = opts.halfClose ?? true;
  const peer = opts.peer ?? peerExtensions(ws);
  /** A local end waiting for the peer's extensions (they decide between `eof` and a close). */
  let endPending = false;
  let linger: NodeJS.Timeout | undefined;
  let resolveDone!: (r: TunnelResult) => void;
  const done = new Promise<TunnelResult>((resolve) => (resolveDone = resolve));
  const activity = opts.onActivity;

  // Frames still in flight after our close go to the local side while it is open.
  const closeWs = (code: number, reason: string): void => closeStreamSocket(ws, code, reason);

  const settle = (): void => {
    if (!wsClosed || !localClosed) return;
    clearTimeout(linger);
    local.off('data', localOnData);
    local.off('end', localOnEnd);
    local.off('error', localOnError);
    local.off('close', localOnClose);
    local.off('drain', localOnDrain);
    sink.off('drain', sinkOnDrain);
    ws.off('message', wsOnMessage);
    ws.off('close', wsOnClose);
    const clean = closeCode === CLOSE.NORMAL && !error;
    resolveDone({ bytesOut, bytesIn, closeCode, closeReason: closeText, endedBy: endedBy ?? 'remote', clean, ...(error ? { error } : {}) });
  };

  // local → WebSocket
  function localOnData(chunk: Buffer): void {
    if (ws.readyState !== WebSocket.OPEN) return; // closing: what the local peer still sends has nowhere to go
    bytesOut += chunk.length;
    activity?.();
    if (!sink.write(chunk)) local.pause();
  }
  /** The same from a shared read buffer: the sink copies before this returns; false pauses the socket. */
  function localOnRead(buf: Buffer, length: number): boolean {
    if (ws.readyState !== WebSocket.OPEN) return true;
    bytesOut += length;
    activity?.();
    return sink.writeCopy(buf, length);
  }
  function sinkOnDrain(): void {
    if (!wsClosed) local.resume();
  }
  // Control messages go out only to a peer that announced their type; until the hub's hello says
  // what the peer speaks, they wait (behind the data already sent, which is never held back).
  function sendControl(msg: ControlMessage): void {
    peer.whenKnown(() => {
      if (peer.has(msg.type) && ws.readyState === WebSocket.OPEN) ws.send(encodeControl(msg));
    });
  }
  function localOnEnd(): void {
    localEnded = true;
    if (wsClosed) return;
    endedBy ??= 'local';
    endPending = true;
    peer.whenKnown(endTowardsPeer);
  }
  function endTowardsPeer(): void {
    endPending = false;
    if (wsClosed) return settle();
    const final = opts.finalControl?.();
    if (final) sendControl(final);
    if (halfClose && peer.has('eof') && !receivedEof && ws.readyState === WebSocket.OPEN) {
      // Queued behind the data already sent, so the peer sees every byte before the end.
      sentEof = true;
      ws.send(encodeControl({ type: 'eof' }));
      return;
    }
    // A plain peer: the end of the stream, after everything read (ws sends the close frame last).
    closeWs(CLOSE.NORMAL, '');
  }
  function localOnError(err: Error): void {
    error ??= err;
    endedBy ??= 'local';
    closeWs(CLOSE.PEER_LOST, `local connection failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
  }
  function localOnClose(): void {
    localClosed = true;
    if (!wsClosed && !endPending) {
      endedBy ??= 'local';
      // Closed without its end, or before the peer's end could be written: the stream was cut here.
      if (localEnded && (receivedEof || !halfClose || !peer.has('eof'))) closeWs(CLOSE.NORMAL, '');
      else closeWs(CLOSE.PEER_LOST, 'local connection closed before the stream ended');
    }
    settle();
  }

  // WebSocket → local
  const resumeWs: Callback = () => {
    wsWaitsForLocalDrain = false;
    if (!wsClosed) ws.resume();
  };
  function localOnDrain(): void {
    if (wsWaitsForLocalDrain) resumeWs();
  }
  function wsOnMessage(data: RawData, isBinary: boolean): void {
    if (!isBinary) {
      const raw = data.toString();
      const msg = decodeControl(raw);
      if (msg?.type === HELLO_TYPE) return; // the hub's, read by the negotiation (peer-extensions.ts)
      if (msg?.type === 'eof') {
        if (receivedEof) return;
        receivedEof = true;
        activity?.();
        if (sentEof) closeWs(CLOSE.NORMAL, '');
        else if (!local.writableEnded) local.end();
        return;
      }
      opts.onControl?.(msg, raw);
      return;
    }
    wsOnBytes(data as Buffer);
  }
  /** Binary payload, as a whole message or (read past ws) in the pieces it arrived in. */
  function wsOnBytes(buf: Buffer): void {
    bytesIn += buf.length;
    activity?.();
    if (local.writableEnded || local.destroyed) return;
    if (!local.write(buf) && !wsWaitsForLocalDrain) {
      wsWaitsForLocalDrain = true;
      ws.pause();
    }
  }
  function wsOnPiece(buf: Buffer): void {
    liveness.heard();
    // The hub's hello precedes every peer byte: bytes first mean no hello is coming (as followNegotiation).
    if (!peer.known) peer.settle([]);
    wsOnBytes(buf);
  }
  function wsOnClose(code: number, reason: Buffer): void {
    wsClosed = true;
    closeCode = code;
    closeText = reason.toString();
    endedBy ??= 'remote';
    if (localClosed) return settle();
    if (code === CLOSE.NORMAL) {
      if (local.writableEnded && local.readableEnded) return;
      // FIN after the last byte; keep reading (and dropping) until the peer closes too, so the kernel
      // does not answer unread data with a reset that could cut off what we just sent.
      local.end();
      local.resume();
      linger = setTimeout(() => local.destroy(), LINGER_MS);
      linger.unref();
    } else {
      resetLocal(local);
    }
  }
  function wsOnError(err: Error): void {
    error ??= err;
  }

  local.on('data', localOnData);
  opts.localReads?.attach(localOnRead);
  local.on('end', localOnEnd);
  local.on('error', localOnError);
  local.on('close', localOnClose);
  local.on('drain', localOnDrain);
  sink.on('drain', sinkOnDrain);
  ws.on('message', wsOnMessage);
  ws.on('close', wsOnClose);
  ws.on('error', wsOnError);
  const liveness = heartbeat(ws, opts.pingIntervalMs ?? WS_PING_INTERVAL_MS);
  // Payload straight from the socket to the local side, never gathered into frames and messages first.
  receivePieces(ws, wsOnPiece);
  if (ws.isPaused) ws.resume();
  // An explicitly paused stream (pauseOnConnect) stays paused when a 'data' listener is added.
  local.resume();
  if (ws.readyState !== WebSocket.OPEN) {
    // Already closing or closed before we got it: make the close path run.
    if (ws.readyState === WebSocket.CLOSED) queueMicrotask(() => wsOnClose(1006, Buffer.alloc(0)));
  }

  return {
    done,
    peer,
    sendControl,
    close(code, reason) {
      endedBy ??= 'local';
      closeWs(code, reason);
      if (code !== CLOSE.NORMAL && !localClosed) resetLocal(local);
    },
  };
}
