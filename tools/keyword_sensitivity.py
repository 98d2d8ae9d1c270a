"""Does a from-scratch T5 read its source? Teacher-forced loss of the first N validation rows with
each row's own dialogue and with another row's (row i + 7), for the summaries (the lab's prompt)
and for the `--keywords` targets (the summary's words found in the dialogue and in at most 5% of
the training summaries, under the keyword prompt, as crates/detox-train/src/keywords.rs builds
them); then three greedy summaries. Equal own / other losses: the decoder ignores the encoder.
Run by hand (transformers):

    python tools/keyword_sensitivity.py MODEL_DIR [N]
"""
import json, sys, string, statistics, torch
from collections import Counter
from transformers import AutoTokenizer, T5ForConditionalGeneration
torch.set_num_threads(1)
md=sys.argv[1]; n=int(sys.argv[2]) if len(sys.argv)>2 else 30
tok=AutoTokenizer.from_pretrained(md); m=T5ForConditionalGeneration.from_pretrained(md).eval()
S="Summarize the following conversation.\n\n{}\n\nSummary: "
K="List the key words of the following conversation.\n\n{}\n\nKey words: "
tr=[json.loads(l) for l in open('../shared/data/dialogsum/train.jsonl')]
P=''.join(c for c in string.punctuation if c!='#')
def words(t): return [w.strip(P).lower() for w in t.split() if w.strip(P)]
df=Counter()
for r in tr: df.update(set(words(r['summary'])))
def kw(s,d):
    D=set(words(d)); seen=set(); out=[]
    for raw in s.split():
        w=words(raw)
        if not w: continue
        w=w[0]
        if w in D and df[w]<=0.05*len(tr) and w not in seen: seen.add(w); out.append(raw.strip(P))
    return ' '.join(out)
rows=[json.loads(l) for l in open('../shared/data/dialogsum/validation.jsonl')][:n]
def loss(tpl,src,tgt):
    x=tok(tpl.format(src),return_tensors='pt',truncation=True,max_length=256)
    y=tok(tgt,return_tensors='pt').input_ids
    with torch.no_grad(): return m(**x,labels=y).loss.item()
res={}
for name,tpl,tg in [("sum",S,lambda r:r['summary']),("kw",K,lambda r:kw(r['summary'],r['dialogue']) or "none")]:
    own=statistics.mean(loss(tpl,r['dialogue'],tg(r)) for r in rows)
    oth=statistics.mean(loss(tpl,rows[(i+7)%n]['dialogue'],tg(r)) for i,r in enumerate(rows))
    res[name]=(round(own,4),round(oth,4),round(oth-own,4))
x=tok([S.format(r['dialogue']) for r in rows[:3]],return_tensors='pt',truncation=True,max_length=256,padding=True)
g=m.generate(**x,max_new_tokens=40)
print(json.dumps({"model":md,**res}))
for s in tok.batch_decode(g,skip_special_tokens=True): print("  ",s)
