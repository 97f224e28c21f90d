import { MemFs } from "./dist/index.js";
import { Volume } from "memfs";
const ctx={uid:0,gid:0,pid:1}; const enc=new TextEncoder();
const O={RDONLY:0,WRONLY:1,RDWR:2,CREAT:0o100,TRUNC:0o1000};
const rows={};
for (const [label,size] of [["4K",4096],["1M",1<<20]]) {
  const data=new Uint8Array(size).fill(0x61);
  { const vol=new Volume(); const fd=vol.openSync("/file","w+"); const back=new Uint8Array(size);
    rows[`${label} open memfs`]=()=>{vol.writeSync(fd,data,0,size,0); vol.readSync(fd,back,0,size,0);};
    const fs=new MemFs(); const {entry,fh}=fs.create(ctx,1,enc.encode("file"),0o100644,O.RDWR|O.CREAT,0); const t=new Uint8Array(size);
    rows[`${label} open MemFs readInto`]=()=>{fs.write(ctx,entry.ino,fh,data,0,0); fs.readInto(ctx,entry.ino,fh,t,0);};
    rows[`${label} open MemFs read`]=()=>{fs.write(ctx,entry.ino,fh,data,0,0); fs.read(ctx,entry.ino,fh,size,0);};
  }
  { const vol=new Volume(); const back=new Uint8Array(size);
    rows[`${label} whole memfs readFile`]=()=>{vol.writeFileSync("/file",data); vol.readFileSync("/file");};
    rows[`${label} whole memfs readSync`]=()=>{vol.writeFileSync("/file",data); const fd=vol.openSync("/file","r"); vol.readSync(fd,back,0,size,0); vol.closeSync(fd);};
    const fs=new MemFs(); const name=enc.encode("file"); const c=fs.create(ctx,1,name,0o100644,O.RDWR|O.CREAT,0); fs.release(ctx,c.entry.ino,c.fh,0); const t=new Uint8Array(size);
    rows[`${label} whole MemFs readInto`]=()=>{const {ino}=fs.lookup(ctx,1,name); const out=fs.open(ctx,ino,O.WRONLY|O.TRUNC).fh; fs.write(ctx,ino,out,data,0,0); fs.release(ctx,ino,out,0); const i=fs.open(ctx,ino,O.RDONLY).fh; fs.readInto(ctx,ino,i,t,0); fs.release(ctx,ino,i,0); fs.forget(ctx,ino,1);};
    rows[`${label} whole MemFs read`]=()=>{const {ino}=fs.lookup(ctx,1,name); const out=fs.open(ctx,ino,O.WRONLY|O.TRUNC).fh; fs.write(ctx,ino,out,data,0,0); fs.release(ctx,ino,out,0); const i=fs.open(ctx,ino,O.RDONLY).fh; fs.read(ctx,ino,i,size,0); fs.release(ctx,ino,i,0); fs.forget(ctx,ino,1);};
  }
}
const only = process.argv[2];
const best={};
for(let r=0;r<15;r++) for(const [k,f] of Object.entries(rows)){ if(only && !k.startsWith(only)) continue; const N=k.startsWith("1M")?100:5000; const s=process.hrtime.bigint(); for(let i=0;i<N;i++)f(); best[k]=Math.min(best[k]??1e9, Number(process.hrtime.bigint()-s)/N/1000);}
for (const [k,v] of Object.entries(best)) console.log(k.padEnd(28), v.toFixed(2),'us');
